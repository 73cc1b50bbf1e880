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
 *  - every write holds the write lock (write_lock()) from BEGIN IMMEDIATE
 *    (or the single autocommit statement) to COMMIT/ROLLBACK; a thread
 *    takes a connection before the write lock, never the other way round,
 *    so waiting for a connection never holds up a writer. The lock is
 *    first come, first served: a writer that loops (a long document's
 *    index, a batch at a time) cannot take it back before the chat that
 *    was waiting;
 *  - a cached statement is reset and its bindings cleared after each use
 *    (stmt_done()), so no statement keeps a read transaction open and no
 *    bound pointer outlives the call;
 *  - a connection goes back to the pool outside any transaction.
 *
 * Schema: see `migrations` below; version N of the schema is reached by
 * running migrations[0..N) in order, each in its own transaction that also
 * sets PRAGMA user_version, with foreign keys off (so a table can be
 * rebuilt without its drop cascading into the rows that refer to it) and
 * checked before the commit. Never edit a migration that has shipped:
 * append a new one.
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

    /* 3 → 4: accounts. Users (names unique in any case: COLLATE NOCASE,
     * exact since names are ASCII), their logins (found by the SHA-256 of
     * the cookie's secret: WITHOUT ROWID, so the login of a request is one
     * b-tree search) and API tokens, an audit log (its AUTOINCREMENT ids
     * never go back, so "keep the newest N" is a range delete by id).
     *
     * Documents get an owner (NULL: nobody's, as every existing one) and a
     * shared flag; sha256 and stored_name stop being UNIQUE, since two
     * owners' documents of one content share one file (uploads keep
     * "same content, same owner: one document" themselves). Sessions get an
     * owner too, and their id becomes the store's key: the id the client
     * chose moves to client_id, unique per owner (the expression index:
     * user ids are never '', so '' stands for "no owner"). messages and
     * session_documents keep referring to sessions.id unchanged, so
     * existing sessions keep their key (= their client id) and new ones
     * get a UUID nobody sees; every lookup goes through (owner, client_id),
     * so no id reaches another owner's session.
     *
     * A UNIQUE constraint cannot be dropped in SQLite: documents and
     * sessions are rebuilt (new table, copy with rowids kept — list order
     * ties and the text index's rowids depend on them — drop, rename), with
     * foreign keys off during the migration (see migrate()) so that the drop
     * does not cascade into texts, chunks and messages. */
    "CREATE TABLE users (\n"
    "    id            TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    name          TEXT NOT NULL UNIQUE COLLATE NOCASE\n"
    "                  CHECK (length(name) BETWEEN 1 AND 64\n"
    "                         AND NOT name GLOB '*[^A-Za-z0-9._@-]*'\n"
    "                         AND name GLOB '[A-Za-z0-9]*'),\n"
    "    password_hash TEXT NOT NULL CHECK (length(password_hash) BETWEEN 1 AND 512),\n"
    "    role          TEXT NOT NULL CHECK (role IN ('user','admin')),\n"
    "    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),\n"
    "    created_at    INTEGER NOT NULL,\n"
    "    updated_at    INTEGER NOT NULL\n"
    ") STRICT;\n"
    "CREATE TABLE logins (\n"
    "    id           TEXT NOT NULL PRIMARY KEY\n"
    "                 CHECK (length(id) = 64 AND NOT id GLOB '*[^0-9a-f]*'),\n"
    "    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n"
    "    created_at   INTEGER NOT NULL,\n"
    "    last_seen_at INTEGER NOT NULL,\n"
    "    idle_ms      INTEGER NOT NULL CHECK (idle_ms > 0),\n"
    "    expires_at   INTEGER NOT NULL,\n"
    "    client_addr  TEXT,\n"
    "    user_agent   TEXT\n"
    ") STRICT, WITHOUT ROWID;\n"
    "CREATE INDEX logins_by_user ON logins (user_id);\n"
    "CREATE INDEX logins_by_expiry ON logins (expires_at);\n"
    "CREATE TABLE api_tokens (\n"
    "    id           TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,\n"
    "    name         TEXT NOT NULL CHECK (length(name) >= 1),\n"
    "    token_hash   TEXT NOT NULL UNIQUE\n"
    "                 CHECK (length(token_hash) = 64 AND NOT token_hash GLOB '*[^0-9a-f]*'),\n"
    "    scope        TEXT NOT NULL CHECK (scope IN ('read','chat','admin')),\n"
    "    created_at   INTEGER NOT NULL,\n"
    "    expires_at   INTEGER,\n"
    "    last_used_at INTEGER\n"
    ") STRICT;\n"
    "CREATE INDEX api_tokens_by_user ON api_tokens (user_id);\n"
    "CREATE TABLE audit_log (\n"
    "    id          INTEGER PRIMARY KEY AUTOINCREMENT,\n"
    "    ts          INTEGER NOT NULL,\n"
    "    actor_id    TEXT,\n"
    "    actor_name  TEXT,\n"
    "    action      TEXT NOT NULL CHECK (length(action) >= 1),\n"
    "    target      TEXT,\n"
    "    client_addr TEXT,\n"
    "    detail      TEXT CHECK (detail IS NULL OR json_valid(detail))\n"
    ") STRICT;\n"
    "\n"
    "CREATE TABLE documents_v4 (\n"
    "    id             TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    owner_id       TEXT REFERENCES users (id) ON DELETE CASCADE,\n"
    "    shared         INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),\n"
    "    filename       TEXT NOT NULL CHECK (length(filename) >= 1),\n"
    "    stored_name    TEXT NOT NULL\n"
    "                   CHECK (length(stored_name) >= 1 AND instr(stored_name, '/') = 0),\n"
    "    content_type   TEXT NOT NULL\n"
    "                   CHECK (content_type IN ('txt','md','pdf','docx','odt','html','epub')),\n"
    "    file_size      INTEGER NOT NULL CHECK (file_size >= 0),\n"
    "    sha256         TEXT NOT NULL\n"
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
    "INSERT INTO documents_v4 (rowid, id, owner_id, shared, filename, stored_name, content_type,\n"
    "    file_size, sha256, uploaded_at, n_chars, n_tokens, cache_status, cache_entry_id,\n"
    "    cache_tokens, cache_bytes, cache_tier, cache_ms, cached_at, cache_error)\n"
    "    SELECT rowid, id, NULL, 0, filename, stored_name, content_type, file_size, sha256,\n"
    "    uploaded_at, n_chars, n_tokens, cache_status, cache_entry_id, cache_tokens,\n"
    "    cache_bytes, cache_tier, cache_ms, cached_at, cache_error FROM documents;\n"
    "DROP TABLE documents;\n"
    "ALTER TABLE documents_v4 RENAME TO documents;\n"
    "CREATE INDEX documents_by_upload ON documents (uploaded_at);\n"
    "CREATE INDEX documents_by_owner ON documents (owner_id);\n"
    "CREATE INDEX documents_by_sha256 ON documents (sha256);\n"
    "CREATE INDEX documents_by_stored_name ON documents (stored_name);\n"
    "\n"
    "CREATE TABLE sessions_v4 (\n"
    "    id          TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    owner_id    TEXT REFERENCES users (id) ON DELETE CASCADE,\n"
    "    client_id   TEXT NOT NULL CHECK (length(client_id) BETWEEN 1 AND 128),\n"
    "    created_at  INTEGER NOT NULL,\n"
    "    last_active INTEGER NOT NULL,\n"
    "    document_id TEXT REFERENCES documents (id) ON DELETE SET NULL,\n"
    "    title       TEXT\n"
    ") STRICT;\n"
    "INSERT INTO sessions_v4 (rowid, id, owner_id, client_id, created_at, last_active,\n"
    "    document_id, title)\n"
    "    SELECT rowid, id, NULL, id, created_at, last_active, document_id, title FROM sessions;\n"
    "DROP TABLE sessions;\n"
    "ALTER TABLE sessions_v4 RENAME TO sessions;\n"
    "CREATE UNIQUE INDEX sessions_by_client ON sessions (ifnull(owner_id, ''), client_id);\n"
    "CREATE INDEX sessions_by_owner ON sessions (ifnull(owner_id, ''), last_active);\n"
    "CREATE INDEX sessions_by_activity ON sessions (last_active);\n"
    "CREATE INDEX sessions_by_document ON sessions (document_id);\n",

    /* 5: periodic jobs, claimed by one process of those sharing the store */
    "CREATE TABLE jobs (\n"
    "    name     TEXT NOT NULL PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),\n"
    "    last_run INTEGER NOT NULL\n"
    ") STRICT;\n"
    /* and settings they all follow (the active model) */
    "CREATE TABLE settings (\n"
    "    key        TEXT NOT NULL PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 64),\n"
    "    value      TEXT NOT NULL CHECK (length(value) <= 4096),\n"
    "    updated_at INTEGER NOT NULL\n"
    ") STRICT;\n",

    /* 6: the content types of the new extractors (slides, spreadsheets,
     * CSV, images), and which pages of a document were recognised from
     * images (OCR) with their mean confidence. The CHECK on content_type
     * cannot be altered in SQLite: the table is rebuilt as in 4 (rowids
     * kept, foreign keys off). */
    "CREATE TABLE documents_v6 (\n"
    "    id             TEXT NOT NULL PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 128),\n"
    "    owner_id       TEXT REFERENCES users (id) ON DELETE CASCADE,\n"
    "    shared         INTEGER NOT NULL DEFAULT 0 CHECK (shared IN (0, 1)),\n"
    "    filename       TEXT NOT NULL CHECK (length(filename) >= 1),\n"
    "    stored_name    TEXT NOT NULL\n"
    "                   CHECK (length(stored_name) >= 1 AND instr(stored_name, '/') = 0),\n"
    "    content_type   TEXT NOT NULL\n"
    "                   CHECK (content_type IN ('txt','md','pdf','docx','odt','html','epub','pptx','odp','xlsx',\n"
    "                   'ods','csv','png','jpeg','tiff','webp')),\n"
    "    file_size      INTEGER NOT NULL CHECK (file_size >= 0),\n"
    "    sha256         TEXT NOT NULL\n"
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
    "    cache_error    TEXT,\n"
    "    ocr_pages      TEXT CHECK (ocr_pages IS NULL OR (length(ocr_pages) BETWEEN 1 AND 16384\n"
    "                                AND NOT ocr_pages GLOB '*[^0-9,]*')),\n"
    "    ocr_confidence INTEGER\n"
    "                   CHECK (ocr_confidence IS NULL OR ocr_confidence BETWEEN 0 AND 100)\n"
    ") STRICT;\n"
    "INSERT INTO documents_v6 (rowid, id, owner_id, shared, filename, stored_name, content_type,\n"
    "    file_size, sha256, uploaded_at, n_chars, n_tokens, cache_status, cache_entry_id,\n"
    "    cache_tokens, cache_bytes, cache_tier, cache_ms, cached_at, cache_error)\n"
    "    SELECT rowid, id, owner_id, shared, filename, stored_name, content_type, file_size,\n"
    "    sha256, uploaded_at, n_chars, n_tokens, cache_status, cache_entry_id, cache_tokens,\n"
    "    cache_bytes, cache_tier, cache_ms, cached_at, cache_error FROM documents;\n"
    "DROP TABLE documents;\n"
    "ALTER TABLE documents_v6 RENAME TO documents;\n"
    "CREATE INDEX documents_by_upload ON documents (uploaded_at);\n"
    "CREATE INDEX documents_by_owner ON documents (owner_id);\n"
    "CREATE INDEX documents_by_sha256 ON documents (sha256);\n"
    "CREATE INDEX documents_by_stored_name ON documents (stored_name);\n",
    /* 6 → 7: a document's chunks are indexed (chunk_fts) after they are
     * written, in short transactions of their own (fts_backfill()), so that
     * a large document does not hold the write lock for all of its index:
     * chunk_fts_pending says how far a document's chunks are indexed while
     * that goes on, and after a crash, so that opening the store finishes
     * it. The delete and update triggers leave alone chunks not yet
     * indexed (FTS5 must never be told to delete what it does not hold).
     * No foreign key: a document's delete cascades to its chunks, whose
     * triggers must still see the row; a row left behind is dropped by
     * the next backfill. */
    "DROP TRIGGER chunks_ai;\n"
    "CREATE TABLE chunk_fts_pending (\n"
    "    document_id  TEXT NOT NULL PRIMARY KEY,\n"
    "    indexed_upto INTEGER NOT NULL CHECK (indexed_upto >= 0)\n"
    ") STRICT;\n"
    "DROP TRIGGER chunks_ad;\n"
    "CREATE TRIGGER chunks_ad AFTER DELETE ON chunks\n"
    "WHEN NOT EXISTS (SELECT 1 FROM chunk_fts_pending p\n"
    "                 WHERE p.document_id = old.document_id AND old.seq >= p.indexed_upto)\n"
    "BEGIN\n"
    "    INSERT INTO chunk_fts (chunk_fts, rowid, index_text)\n"
    "        VALUES ('delete', old.rowid, old.index_text);\n"
    "END;\n"
    "DROP TRIGGER chunks_au;\n"
    "CREATE TRIGGER chunks_au AFTER UPDATE OF index_text ON chunks\n"
    "WHEN NOT EXISTS (SELECT 1 FROM chunk_fts_pending p\n"
    "                 WHERE p.document_id = old.document_id AND old.seq >= p.indexed_upto)\n"
    "BEGIN\n"
    "    INSERT INTO chunk_fts (chunk_fts, rowid, index_text)\n"
    "        VALUES ('delete', old.rowid, old.index_text);\n"
    "    INSERT INTO chunk_fts (rowid, index_text) VALUES (new.rowid, new.index_text);\n"
    "END;\n",
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
    "(SELECT count(*) FROM chunks k WHERE k.document_id = d.id), d.owner_id, d.shared, "  \
    "d.ocr_pages, d.ocr_confidence"

/* Scopes (see store.h, "Ownership and scopes") are bound as parameters of
 * fixed numbers, far above those of any statement's own (bind_scope()):
 * SC_ALL is 1 in local mode and for admins, SC_UID the acting user (NULL in
 * local mode), SC_OKEY the owner key of sessions ('' in local mode,
 * matching the sessions_by_client index's ifnull(owner_id, '')). Not named
 * parameters: SQLite numbers ":name" after the highest ?N seen before it in
 * the text, so it would share its slot with a later ?N. */
#define SC_ALL_N 61
#define SC_UID_N 62
#define SC_OKEY_N 63
#define SC_ALL "?61"
#define SC_UID "?62"
#define SC_OKEY "?63"
/* What a scope may read of documents, and what it may write: */
#define DOC_READABLE "(" SC_ALL " OR d.owner_id = " SC_UID " OR d.shared)"
#define DOC_WRITABLE "(" SC_ALL " OR d.owner_id = " SC_UID ")"
/* A session of the scope, by the id its client knows (?1). */
#define SES_OF_SCOPE "ifnull(s.owner_id, '') = " SC_OKEY " AND s.client_id = ?1"

/* Columns of a session row, in the order row_session() reads them. */
#define SESSION_SELECT                                                                  \
    "SELECT s.client_id, s.created_at, s.last_active, s.document_id, s.title, "        \
    "(SELECT count(*) FROM messages m WHERE m.session_id = s.id), d.filename, "        \
    "s.owner_id FROM sessions s LEFT JOIN documents d ON d.id = s.document_id "

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

/* Columns of a user row (row_user()), with or without the password hash. */
#define USER_COLS_HASH "u.id, u.name, u.password_hash, u.role, u.disabled, u.created_at, " \
                       "u.updated_at"
#define USER_COLS "u.id, u.name, NULL, u.role, u.disabled, u.created_at, u.updated_at"
#define USER_NCOLS 7

/* Columns of a login row (row_login()). */
#define LOGIN_COLS "l.id, l.user_id, l.created_at, l.last_seen_at, l.expires_at, l.idle_ms, " \
                   "l.client_addr, l.user_agent"
#define LOGIN_NCOLS 8

/* Columns of a token row (row_token()), with or without its hash. */
#define TOKEN_COLS_HASH "t.id, t.user_id, t.name, t.token_hash, t.scope, t.created_at, " \
                        "t.expires_at, t.last_used_at"
#define TOKEN_COLS "t.id, t.user_id, t.name, NULL, t.scope, t.created_at, t.expires_at, " \
                   "t.last_used_at"
#define TOKEN_NCOLS 8

typedef enum {
    ST_BEGIN_IMMEDIATE,
    ST_COMMIT,
    ST_ROLLBACK,
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
    ST_FTS_PENDING_SET,
    ST_FTS_PENDING_GET,
    ST_FTS_INDEX_RANGE,
    ST_FTS_MORE,
    ST_FTS_PENDING_ADVANCE,
    ST_FTS_PENDING_DONE,
    ST_FTS_PENDING_LIST,
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
    [ST_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_DOC_INSERT] =
        "INSERT INTO documents (id, filename, stored_name, content_type, file_size, sha256, "
        "uploaded_at, n_chars, n_tokens, owner_id, shared) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [ST_CHUNK_INSERT] =
        "INSERT INTO document_chunks (document_id, seq, text) VALUES (?1, ?2, ?3)",
    [ST_DOC_SET_CHARS] = "UPDATE documents SET n_chars = ?2 WHERE id = ?1",
    [ST_DOC_GET] = "SELECT " DOC_COLS " FROM documents d WHERE d.id = ?1 AND " DOC_READABLE,
    [ST_DOC_GET_W] = "SELECT " DOC_COLS " FROM documents d WHERE d.id = ?1 AND " DOC_WRITABLE,
    /* The scope's own document of this content; in local mode (no user)
     * anyone's, the first stored. */
    [ST_DOC_BY_SHA] = "SELECT " DOC_COLS " FROM documents d WHERE d.sha256 = ?1 "
                      "AND (" SC_UID " IS NULL OR d.owner_id = " SC_UID ") "
                      "ORDER BY d.rowid LIMIT 1",
    /* Anyone's document of this content: whose file a new copy uses. */
    [ST_DOC_SHA_SOURCE] = "SELECT id, stored_name FROM documents WHERE sha256 = ?1 "
                          "ORDER BY rowid LIMIT 1",
    /* A file name is one content's: taken when documents of another use it. */
    [ST_DOC_NAME_CLASH] = "SELECT 1 FROM documents WHERE stored_name = ?1 AND sha256 <> ?2 "
                          "LIMIT 1",
    /* one row per piece; one row with NULL for an empty text; none for no
     * such document */
    [ST_DOC_TEXT] = "SELECT c.text FROM documents d "
                    "LEFT JOIN document_chunks c ON c.document_id = d.id "
                    "WHERE d.id = ?1 ORDER BY c.seq",
    [ST_DOC_LIST] = "SELECT " DOC_COLS " FROM documents d WHERE " DOC_READABLE " "
                    "ORDER BY d.uploaded_at DESC, d.rowid DESC",
    [ST_DOC_DELETE] = "DELETE FROM documents WHERE id = ?1",
    [ST_DOC_SET_TOKENS] = "UPDATE documents SET n_tokens = ?2 WHERE id = ?1",
    [ST_DOC_SET_OCR] = "UPDATE documents SET ocr_pages = ?2, ocr_confidence = ?3 WHERE id = ?1",
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
                      "JOIN documents d ON d.id = m.id WHERE " DOC_READABLE " "
                      "ORDER BY m.r LIMIT ?2",
    [ST_DOC_VISIBLE] = "SELECT 1 FROM documents d WHERE d.id = ?1 AND " DOC_READABLE,
    [ST_DOC_SET_SHARED] = "UPDATE documents SET shared = ?2 WHERE id = ?1",
    /* ?2: the document's owner (NULL: nobody) */
    [ST_DOC_UNSHARE_SETS] = "DELETE FROM session_documents WHERE document_id = ?1 AND "
                            "session_id IN (SELECT id FROM sessions WHERE owner_id IS NOT ?2)",
    [ST_DOC_UNSHARE_SESSIONS] = "UPDATE sessions SET document_id = NULL "
                                "WHERE document_id = ?1 AND owner_id IS NOT ?2",
    [ST_FILE_REFS] = "SELECT count(*) FROM documents WHERE stored_name = ?1",
    /* ?1 the new id, ?2 its owner, ?3 its filename, ?4 now, ?5 the source */
    [ST_COPY_DOC] =
        "INSERT INTO documents (id, owner_id, shared, filename, stored_name, content_type, "
        "file_size, sha256, uploaded_at, n_chars, n_tokens) "
        "SELECT ?1, ?2, 0, ?3, stored_name, content_type, file_size, sha256, ?4, n_chars, "
        "n_tokens FROM documents WHERE id = ?5",
    /* ?1 the new id, ?2 the source */
    [ST_COPY_TEXT] = "INSERT INTO document_chunks (document_id, seq, text) "
                     "SELECT ?1, seq, text FROM document_chunks WHERE document_id = ?2 "
                     "ORDER BY seq",
    [ST_COPY_MARKS] = "INSERT INTO document_marks (document_id, seq, kind, pos, number, label) "
                      "SELECT ?1, seq, kind, pos, number, label FROM document_marks "
                      "WHERE document_id = ?2",
    [ST_COPY_CHUNKS] =
        "INSERT INTO chunks (document_id, seq, pos_start, pos_end, n_chars, est_tokens, "
        "tokens, tokens_key, page_first, page_last, label_first, label_last, heading, "
        "content, index_text) "
        "SELECT ?1, seq, pos_start, pos_end, n_chars, est_tokens, tokens, tokens_key, "
        "page_first, page_last, label_first, label_last, heading, content, index_text "
        "FROM chunks WHERE document_id = ?2 ORDER BY seq",
    [ST_COPY_PARTS] =
        "INSERT INTO document_parts (document_id, plan_key, seq, chunk_first, chunk_last, "
        "tokens, content_length) SELECT ?1, plan_key, seq, chunk_first, chunk_last, tokens, "
        "content_length FROM document_parts WHERE document_id = ?2",
    /* ?1 the key, ?2 the owner, ?3 the client's id */
    [ST_SES_INSERT] = "INSERT INTO sessions (id, owner_id, client_id, created_at, last_active, "
                      "document_id, title) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
    [ST_SES_GET] = SESSION_SELECT "WHERE " SES_OF_SCOPE,
    [ST_SES_TOUCH] = "UPDATE sessions AS s SET last_active = max(last_active, ?2) "
                     "WHERE " SES_OF_SCOPE,
    [ST_SES_TOUCH_KEY] = "UPDATE sessions SET last_active = max(last_active, ?2) WHERE id = ?1",
    [ST_SES_SET_DOC] = "UPDATE sessions SET document_id = ?2 WHERE id = ?1",
    [ST_SES_SET_TITLE] = "UPDATE sessions AS s SET title = ?2 WHERE " SES_OF_SCOPE,
    [ST_SES_LIST] = SESSION_SELECT "WHERE ifnull(s.owner_id, '') = " SC_OKEY " "
                    "ORDER BY s.last_active DESC, s.rowid DESC LIMIT ?1",
    [ST_SES_DELETE] = "DELETE FROM sessions AS s WHERE " SES_OF_SCOPE,
    [ST_SES_DELETE_IDLE] = "DELETE FROM sessions WHERE last_active < ?1",
    /* The store's key of a session, and its one document. */
    [ST_SES_KEY] = "SELECT s.id, s.document_id FROM sessions s WHERE " SES_OF_SCOPE,
    [ST_MSG_INSERT] = "INSERT INTO messages (session_id, role, content, created_at, incomplete, "
                      "meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* The last ?2 messages (all for -1), oldest first; their session_id
     * read back as the client's id (?1), not the key. */
    [ST_MSG_LIST] = "SELECT id, ?1, role, content, created_at, incomplete, meta FROM "
                    "(SELECT " MSG_COLS " FROM messages WHERE session_id = "
                    "(SELECT s.id FROM sessions s WHERE " SES_OF_SCOPE ") "
                    "ORDER BY id DESC LIMIT ?2) ORDER BY id",
    [ST_MSG_COUNT] = "SELECT (SELECT count(*) FROM messages m WHERE m.session_id = s.id) "
                     "FROM sessions s WHERE " SES_OF_SCOPE,
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
    [ST_FTS_PENDING_SET] = "INSERT INTO chunk_fts_pending (document_id, indexed_upto) "
                           "VALUES (?1, 0) ON CONFLICT (document_id) DO UPDATE SET indexed_upto = 0",
    [ST_FTS_PENDING_GET] = "SELECT indexed_upto FROM chunk_fts_pending WHERE document_id = ?1",
    [ST_FTS_INDEX_RANGE] = "INSERT INTO chunk_fts (rowid, index_text) SELECT rowid, index_text "
                           "FROM chunks WHERE document_id = ?1 AND seq >= ?2 AND seq < ?3",
    [ST_FTS_MORE] = "SELECT EXISTS (SELECT 1 FROM chunks WHERE document_id = ?1 AND seq >= ?2)",
    [ST_FTS_PENDING_ADVANCE] = "UPDATE chunk_fts_pending SET indexed_upto = ?2 "
                               "WHERE document_id = ?1",
    [ST_FTS_PENDING_DONE] = "DELETE FROM chunk_fts_pending WHERE document_id = ?1",
    [ST_FTS_PENDING_LIST] = "SELECT document_id FROM chunk_fts_pending",
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
    [ST_COLL_INSERT] = "INSERT INTO collections (id, name, created_at) VALUES (?1, ?2, ?3)",
    [ST_COLLDOC_INSERT] = "INSERT INTO collection_documents (collection_id, pos, document_id) "
                          "VALUES (?1, ?2, ?3)",
    [ST_COLL_GET] = "SELECT name, created_at FROM collections WHERE id = ?1",
    [ST_COLLDOC_LIST] = "SELECT document_id FROM collection_documents WHERE collection_id = ?1 "
                        "ORDER BY pos",
    [ST_USER_INSERT] = "INSERT INTO users (id, name, password_hash, role, disabled, created_at, "
                       "updated_at) VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
    [ST_USER_GET] = "SELECT " USER_COLS_HASH " FROM users u WHERE u.id = ?1",
    /* name is COLLATE NOCASE: any case, by its unique index */
    [ST_USER_BY_NAME] = "SELECT " USER_COLS_HASH " FROM users u WHERE u.name = ?1",
    [ST_USER_LIST] = "SELECT " USER_COLS " FROM users u ORDER BY u.name, u.id",
    /* role, disabled, and the enabled admins there are */
    [ST_USER_STATE] = "SELECT role, disabled, (SELECT count(*) FROM users "
                      "WHERE role = 'admin' AND disabled = 0) FROM users WHERE id = ?1",
    [ST_USER_COUNT] = "SELECT count(*), count(*) FILTER (WHERE role = 'admin' AND disabled = 0) "
                      "FROM users",
    [ST_USER_SET_ROLE] = "UPDATE users SET role = ?2, updated_at = ?3 WHERE id = ?1",
    [ST_USER_SET_DISABLED] = "UPDATE users SET disabled = ?2, updated_at = ?3 WHERE id = ?1",
    [ST_USER_SET_PASSWORD] = "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1",
    /* cascades: documents (and their texts, chunks, parts), sessions (and
     * messages), logins, tokens */
    [ST_USER_DELETE] = "DELETE FROM users WHERE id = ?1",
    [ST_USER_DOCS] = "SELECT " DOC_COLS " FROM documents d WHERE d.owner_id = ?1 "
                     "ORDER BY d.uploaded_at DESC, d.rowid DESC",
    [ST_USER_USAGE] = "SELECT coalesce(sum(file_size), 0), count(*), "
                      "EXISTS (SELECT 1 FROM users WHERE id = ?1) "
                      "FROM documents WHERE owner_id = ?1",
    /* an unowned session whose client id the user already has */
    [ST_ADOPT_CLASH] = "SELECT 1 FROM sessions a WHERE a.owner_id IS NULL AND EXISTS "
                       "(SELECT 1 FROM sessions s WHERE ifnull(s.owner_id, '') = ?1 "
                       "AND s.client_id = a.client_id) LIMIT 1",
    [ST_ADOPT_DOCS] = "UPDATE documents SET owner_id = ?1 WHERE owner_id IS NULL",
    [ST_ADOPT_SESSIONS] = "UPDATE sessions SET owner_id = ?1 WHERE owner_id IS NULL",
    /* only for an enabled user: no row inserted otherwise */
    [ST_LOGIN_INSERT] = "INSERT INTO logins (id, user_id, created_at, last_seen_at, idle_ms, "
                        "expires_at, client_addr, user_agent) "
                        "SELECT ?1, id, ?3, ?3, ?4, ?3 + ?4, ?5, ?6 FROM users "
                        "WHERE id = ?2 AND disabled = 0",
    [ST_LOGIN_GET] = "SELECT " LOGIN_COLS " FROM logins l WHERE l.id = ?1",
    [ST_LOGIN_LOOKUP] = "SELECT " LOGIN_COLS ", " USER_COLS " FROM logins l "
                        "JOIN users u ON u.id = l.user_id "
                        "WHERE l.id = ?1 AND l.expires_at > ?2 AND u.disabled = 0",
    [ST_LOGIN_TOUCH] = "UPDATE logins SET last_seen_at = max(last_seen_at, ?2), "
                       "expires_at = max(expires_at, ?2 + idle_ms) "
                       "WHERE id = ?1 AND expires_at > ?2",
    [ST_LOGIN_LIST] = "SELECT " LOGIN_COLS " FROM logins l WHERE l.user_id = ?1 "
                      "ORDER BY l.last_seen_at DESC, l.id",
    [ST_LOGIN_DELETE] = "DELETE FROM logins WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
    [ST_LOGIN_DELETE_USER] = "DELETE FROM logins WHERE user_id = ?1 AND id IS NOT ?2",
    [ST_LOGIN_SWEEP] = "DELETE FROM logins WHERE expires_at <= ?1",
    [ST_TOKEN_INSERT] = "INSERT INTO api_tokens (id, user_id, name, token_hash, scope, "
                        "created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_TOKEN_GET] = "SELECT " TOKEN_COLS_HASH " FROM api_tokens t WHERE t.id = ?1",
    [ST_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM api_tokens t WHERE t.user_id = ?1 "
                      "ORDER BY t.created_at DESC, t.rowid DESC",
    [ST_TOKEN_ALL] = "SELECT " TOKEN_COLS_HASH " FROM api_tokens t "
                     "ORDER BY t.created_at, t.rowid",
    [ST_COLL_IDS] = "SELECT id FROM collections ORDER BY created_at, rowid",
    [ST_TOKEN_LOOKUP] = "SELECT " TOKEN_COLS_HASH ", " USER_COLS " FROM api_tokens t "
                        "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?1 "
                        "AND (t.expires_at IS NULL OR t.expires_at > ?2) AND u.disabled = 0",
    [ST_TOKEN_TOUCH] = "UPDATE api_tokens SET last_used_at = max(ifnull(last_used_at, 0), ?2) "
                       "WHERE id = ?1",
    [ST_TOKEN_DELETE] = "DELETE FROM api_tokens WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2)",
    [ST_TOKEN_DELETE_USER] = "DELETE FROM api_tokens WHERE user_id = ?1",
    [ST_TOKEN_DELETE_ADMIN] = "DELETE FROM api_tokens WHERE user_id = ?1 AND scope = 'admin'",
    [ST_AUDIT_INSERT] = "INSERT INTO audit_log (ts, actor_id, actor_name, action, target, "
                        "client_addr, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_AUDIT_TRIM] = "DELETE FROM audit_log WHERE id <= ?1",
    [ST_AUDIT_PRUNE] = "DELETE FROM audit_log WHERE id <= (SELECT max(id) FROM audit_log) - ?1",
    [ST_JOB_CLAIM] = "INSERT INTO jobs (name, last_run) VALUES (?1, ?2) ON CONFLICT (name) "
                     "DO UPDATE SET last_run = excluded.last_run "
                     "WHERE jobs.last_run <= ?2 - ?3",
    [ST_SETTING_SET] = "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                       "updated_at = max(excluded.updated_at, settings.updated_at + 1)",
    [ST_SETTING_GET] = "SELECT value, updated_at FROM settings WHERE key = ?1",
    [ST_AUDIT_LIST] = "SELECT id, ts, actor_id, actor_name, action, target, client_addr, detail "
                      "FROM audit_log WHERE (?1 IS NULL OR actor_id = ?1 "
                      "OR actor_name = ?1 COLLATE NOCASE) AND (?2 IS NULL OR action = ?2) "
                      "ORDER BY id DESC LIMIT ?3 OFFSET ?4",
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
    pthread_mutex_t write_mu;    /* guards the tickets below */
    pthread_cond_t write_cv;     /* write_serving moved on */
    uint64_t write_next;         /* the ticket the next writer takes */
    uint64_t write_serving;      /* the ticket that holds the write lock */
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

/* Bind the scope parameters (SC_ALL, SC_UID, SC_OKEY) of a statement that
 * has them: NULL is local mode. */
static void bind_scope(sqlite3_stmt *st, const store_scope_t *scope)
{
    if (sqlite3_bind_parameter_count(st) < SC_ALL_N)
        return;
    sqlite3_bind_int(st, SC_ALL_N, !scope || scope->admin);
    bind_text(st, SC_UID_N, scope ? scope->user_id : NULL);
    bind_text(st, SC_OKEY_N, scope ? scope->user_id : "");
}

/* The owner a scope gives new records: NULL in local mode. */
static const char *scope_owner(const store_scope_t *scope)
{
    return scope ? scope->user_id : NULL;
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
        col_dup(st, 5, &d->sha256) || row_cache_at(st, 9, &d->cache) ||
        col_dup(st, 19, &d->owner_id) || col_dup(st, 21, &d->ocr_pages)) {
        store_doc_cleanup(d);
        return STORE_ENOMEM;
    }
    d->file_size = sqlite3_column_int64(st, 4);
    d->uploaded_at = sqlite3_column_int64(st, 6);
    d->n_chars = sqlite3_column_int64(st, 7);
    d->n_tokens = col_opt_int(st, 8);
    d->n_pages = sqlite3_column_int64(st, 17);
    d->n_chunks = sqlite3_column_int64(st, 18);
    d->shared = sqlite3_column_int(st, 20) != 0;
    d->ocr_confidence = (int)col_opt_int(st, 22);
    return STORE_OK;
}

/* Fill *ss (initialized) from a SESSION_SELECT row. On STORE_ENOMEM *ss is
 * cleaned up. */
static int row_session(sqlite3_stmt *st, store_session_t *ss)
{
    if (col_dup(st, 0, &ss->id) || col_dup(st, 3, &ss->document_id) ||
        col_dup(st, 4, &ss->title) || col_dup(st, 6, &ss->document_filename) ||
        col_dup(st, 7, &ss->owner_id)) {
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

/* Fill *u (initialized) from the USER_COLS columns starting at i. On
 * STORE_ENOMEM *u is cleaned up. */
static int row_user(sqlite3_stmt *st, int i, store_user_t *u)
{
    char *role = NULL;
    if (col_dup(st, i, &u->id) || col_dup(st, i + 1, &u->name) ||
        col_dup(st, i + 2, &u->password_hash) || col_dup(st, i + 3, &role)) {
        free(role);
        store_user_cleanup(u);
        return STORE_ENOMEM;
    }
    if (store_user_role_parse(role, &u->role) != STORE_OK)
        u->role = STORE_USER_ROLE_USER; /* cannot happen: CHECK constraint */
    free(role);
    u->disabled = sqlite3_column_int(st, i + 4) != 0;
    u->created_at = sqlite3_column_int64(st, i + 5);
    u->updated_at = sqlite3_column_int64(st, i + 6);
    return STORE_OK;
}

/* Fill *l (initialized) from a LOGIN_COLS row. On STORE_ENOMEM *l is
 * cleaned up. */
static int row_login(sqlite3_stmt *st, store_login_t *l)
{
    if (col_dup(st, 0, &l->id) || col_dup(st, 1, &l->user_id) ||
        col_dup(st, 6, &l->client_addr) || col_dup(st, 7, &l->user_agent)) {
        store_login_cleanup(l);
        return STORE_ENOMEM;
    }
    l->created_at = sqlite3_column_int64(st, 2);
    l->last_seen_at = sqlite3_column_int64(st, 3);
    l->expires_at = sqlite3_column_int64(st, 4);
    l->idle_ms = sqlite3_column_int64(st, 5);
    return STORE_OK;
}

/* Fill *t (initialized) from a TOKEN_COLS(_HASH) row. On STORE_ENOMEM *t
 * is cleaned up. */
static int row_token(sqlite3_stmt *st, store_token_t *t)
{
    char *scope = NULL;
    if (col_dup(st, 0, &t->id) || col_dup(st, 1, &t->user_id) || col_dup(st, 2, &t->name) ||
        col_dup(st, 3, &t->hash) || col_dup(st, 4, &scope)) {
        free(scope);
        store_token_cleanup(t);
        return STORE_ENOMEM;
    }
    if (store_token_scope_parse(scope, &t->scope) != STORE_OK)
        t->scope = STORE_TOKEN_READ; /* cannot happen: CHECK constraint */
    free(scope);
    t->created_at = sqlite3_column_int64(st, 5);
    t->expires_at = col_opt_int(st, 6);
    t->last_used_at = col_opt_int(st, 7);
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

/* The write lock, in the order writers asked for it (a ticket each). */
static void write_lock(struct store_backend *b)
{
    pthread_mutex_lock(&b->write_mu);
    uint64_t ticket = b->write_next++;
    while (ticket != b->write_serving)
        pthread_cond_wait(&b->write_cv, &b->write_mu);
    pthread_mutex_unlock(&b->write_mu);
}

static void write_unlock(struct store_backend *b)
{
    pthread_mutex_lock(&b->write_mu);
    b->write_serving++;
    pthread_cond_broadcast(&b->write_cv);
    pthread_mutex_unlock(&b->write_mu);
}

/* Begin a write transaction: take the write lock, BEGIN IMMEDIATE. On
 * failure the lock is released. */
static int write_begin(struct store_backend *b, conn_t *c)
{
    write_lock(b);
    int rc = exec_cached(c, ST_BEGIN_IMMEDIATE);
    if (rc != STORE_OK)
        write_unlock(b);
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
    write_unlock(b);
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

/* Every foreign key of the database holds: STORE_OK, or STORE_ECORRUPT
 * (the first offending row logged). */
static int foreign_keys_hold(conn_t *c, const char *path)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(c->db, "PRAGMA foreign_key_check", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int out;
    if (rc == SQLITE_ROW) {
        log_error("store: %s: a row of %s refers to a missing row of %s", path,
                  (const char *)sqlite3_column_text(st, 0),
                  (const char *)sqlite3_column_text(st, 2));
        out = STORE_ECORRUPT;
    } else {
        out = rc == SQLITE_DONE ? STORE_OK : sqlite_rc(c->db, rc, "foreign key check");
    }
    sqlite3_finalize(st);
    return out;
}

/* Bring the schema to STORE_SQLITE_SCHEMA_VERSION, one migration per
 * transaction. Another process may migrate at the same time: the version is
 * read again inside each transaction. Foreign keys are off while a
 * migration runs (the pragma is a no-op inside a transaction, so it is set
 * around it) and on again afterwards, whatever happened. */
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
        rc = conn_pragma(c->db, "PRAGMA foreign_keys = OFF", NULL, b->path);
        if (rc == STORE_OK)
            rc = write_begin(b, c);
        if (rc != STORE_OK)
            break;
        rc = read_int_pragma(c, "PRAGMA user_version", &version, b->path);
        if (rc == STORE_OK && version < N_MIGRATIONS) {
            char *err = NULL;
            char pragmas[96];
            snprintf(pragmas, sizeof pragmas, "PRAGMA user_version = %d; "
                     "PRAGMA application_id = %d;", version + 1, STORE_SQLITE_APP_ID);
            int src = sqlite3_exec(c->db, migrations[version], NULL, NULL, &err);
            if (src == SQLITE_OK)
                src = sqlite3_exec(c->db, pragmas, NULL, NULL, &err);
            if (src == SQLITE_OK && (rc = foreign_keys_hold(c, b->path)) != STORE_OK) {
                log_error("store: %s: migration to schema version %d failed", b->path,
                          version + 1);
            } else if (src != SQLITE_OK) {
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
            break;
    }
    int frc = conn_pragma(c->db, "PRAGMA foreign_keys = ON", NULL, b->path);
    if (frc == STORE_OK)
        frc = conn_pragma(c->db, "PRAGMA foreign_keys", "1", b->path);
    return rc != STORE_OK ? rc : frc;
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
    pthread_cond_destroy(&b->write_cv);
    free(b->path);
    free(b);
}

/* A document's chunk index, written after its chunks (migration 7). */
static int fts_backfill(struct store_backend *b, const char *id);
static int fts_backfill_all(struct store_backend *b);
static int run_doc_stmt(conn_t *c, stmt_id_t id, const char *doc,
                        void (*bind)(sqlite3_stmt *st, const void *arg), const void *arg);

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
    pthread_cond_init(&b->write_cv, NULL);

    conn_t *c = NULL;
    int rc = conn_get(b, &c);
    if (rc == STORE_OK) {
        rc = migrate(b, c);
        conn_put(b, c);
    }
    if (rc == STORE_OK)
        rc = fts_backfill_all(b);
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
        write_lock(b);
        src = sqlite3_exec(c->db,
                           "INSERT INTO document_fts (document_fts) VALUES ('integrity-check');"
                           "INSERT INTO chunk_fts (chunk_fts) VALUES ('integrity-check')",
                           NULL, NULL, NULL);
        write_unlock(b);
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

/* Step st once: STORE_OK with a row to read, STORE_ENOTFOUND when there is
 * none, or an error. The caller reads the row, then calls stmt_done(st). */
static int step_one(conn_t *c, sqlite3_stmt *st, const char *what)
{
    int src = sqlite3_step(st);
    return src == SQLITE_ROW ? STORE_OK : src == SQLITE_DONE ? STORE_ENOTFOUND
                                                             : sqlite_rc(c->db, src, what);
}

/* The scope's existing document of content `sha256` into *out (for a
 * dedupe): STORE_OK, STORE_ENOTFOUND or an error. */
static int doc_by_sha(conn_t *c, const store_scope_t *scope, const char *sha256,
                      store_doc_t *out)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_DOC_BY_SHA, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, sha256);
        bind_scope(st, scope);
        rc = query_doc(c, st, out, "find document");
    }
    return rc;
}

/* Anyone's document of content `sha256`: its id and stored_name into
 * *id and *stored (heap copies, caller frees; NULL when there is none). */
static int doc_source(conn_t *c, const char *sha256, char **id, char **stored)
{
    *id = *stored = NULL;
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_DOC_SHA_SOURCE, &st);
    if (rc != STORE_OK)
        return rc;
    bind_text(st, 1, sha256);
    rc = step_one(c, st, "find document");
    if (rc == STORE_OK && (col_dup(st, 0, id) || col_dup(st, 1, stored)))
        rc = STORE_ENOMEM;
    stmt_done(st);
    if (rc == STORE_ENOTFOUND)
        rc = STORE_OK;
    if (rc != STORE_OK) {
        free(*id);
        free(*stored);
        *id = *stored = NULL;
    }
    return rc;
}

/* Read document `id` back inside the transaction that wrote it. */
static int doc_read_back(conn_t *c, const char *id, store_doc_t *out)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_DOC_GET, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        bind_scope(st, NULL);
        rc = query_doc(c, st, out, "read document");
        if (rc == STORE_ENOTFOUND)
            rc = STORE_EIO; /* just written in this transaction */
    }
    return rc;
}

/* Same content, same owner: the existing document. Same content, another
 * owner: a new document using that owner's file. New content: a new
 * document with the caller's file, whose name no other content may use. */
static int sq_doc_insert(store_backend_t *b, const store_scope_t *scope, const store_doc_t *doc,
                         store_text_src_t *text, store_doc_t *out, bool *existed)
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
    char *src_id = NULL, *src_file = NULL;
    *existed = false;
    rc = doc_by_sha(c, scope, doc->sha256, out);
    if (rc == STORE_OK)
        *existed = true;
    if (rc == STORE_ENOTFOUND)
        rc = doc_source(c, doc->sha256, &src_id, &src_file);
    if (rc == STORE_OK && !*existed && !src_file) {
        rc = stmt_get(c, ST_DOC_NAME_CLASH, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, doc->stored_name);
            bind_text(st, 2, doc->sha256);
            rc = step_one(c, st, "find file");
            stmt_done(st);
            rc = rc == STORE_OK ? STORE_ECONFLICT : rc == STORE_ENOTFOUND ? STORE_OK : rc;
        }
    }
    if (rc == STORE_OK && !*existed) {
        rc = stmt_get(c, ST_DOC_INSERT, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, doc->id);
            bind_text(st, 2, doc->filename);
            bind_text(st, 3, src_file ? src_file : doc->stored_name);
            bind_text(st, 4, doc->content_type);
            sqlite3_bind_int64(st, 5, doc->file_size);
            bind_text(st, 6, doc->sha256);
            sqlite3_bind_int64(st, 7, doc->uploaded_at);
            sqlite3_bind_int64(st, 8, 0);   /* counted while the pieces go in */
            bind_opt_int(st, 9, doc->n_tokens);
            bind_text(st, 10, scope_owner(scope));
            sqlite3_bind_int(st, 11, doc->shared);
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
            rc = doc_read_back(c, doc->id, out);
    }
    rc = write_end(b, c, rc);
    conn_put(b, c);
    free(src_id);
    free(src_file);
    return rc;
}

/* Run statement `sid` with (?1 new id, ?2 source id): one step of a copy. */
static int copy_rows(conn_t *c, stmt_id_t sid, const char *new_id, const char *src_id)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, sid, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, new_id);
        bind_text(st, 2, src_id);
        rc = stmt_run(c, st, stmt_sql[sid]);
    }
    return rc;
}

static int sq_doc_copy_content(store_backend_t *b, const store_scope_t *scope,
                               const char *sha256, const char *filename, const char *new_id,
                               int64_t now_ms, store_doc_t *out, bool *existed)
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
    char *src_id = NULL, *src_file = NULL;
    *existed = false;
    rc = doc_by_sha(c, scope, sha256, out);
    if (rc == STORE_OK)
        *existed = true;
    if (rc == STORE_ENOTFOUND) {
        rc = doc_source(c, sha256, &src_id, &src_file);
        if (rc == STORE_OK && !src_id)
            rc = STORE_ENOTFOUND;
        sqlite3_stmt *st;
        if (rc == STORE_OK)
            rc = stmt_get(c, ST_COPY_DOC, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, new_id);
            bind_text(st, 2, scope_owner(scope));
            bind_text(st, 3, filename);
            sqlite3_bind_int64(st, 4, now_ms);
            bind_text(st, 5, src_id);
            rc = stmt_run(c, st, "copy document");
        }
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_TEXT, new_id, src_id);
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_MARKS, new_id, src_id);
        /* the copies' index follows in batches (fts_backfill below) */
        if (rc == STORE_OK)
            rc = run_doc_stmt(c, ST_FTS_PENDING_SET, new_id, NULL, NULL);
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_CHUNKS, new_id, src_id);
        if (rc == STORE_OK)
            rc = copy_rows(c, ST_COPY_PARTS, new_id, src_id);
        if (rc == STORE_OK)
            rc = doc_read_back(c, new_id, out);
    }
    rc = write_end(b, c, rc);
    conn_put(b, c);
    if (rc == STORE_OK)
        rc = fts_backfill(b, new_id);
    free(src_id);
    free(src_file);
    return rc;
}

/* A read of one document by statement `id` with ?1 = key and the scope. */
static int doc_read(store_backend_t *b, stmt_id_t id, const store_scope_t *scope,
                    const char *key, store_doc_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, id, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, key);
        bind_scope(st, scope);
        rc = query_doc(c, st, out, "read document");
    }
    conn_put(b, c);
    return rc;
}

static int sq_doc_get(store_backend_t *b, const store_scope_t *scope, const char *id,
                      store_doc_t *out)
{
    return doc_read(b, ST_DOC_GET, scope, id, out);
}

static int sq_doc_find_sha256(store_backend_t *b, const store_scope_t *scope, const char *sha256,
                              store_doc_t *out)
{
    return doc_read(b, ST_DOC_BY_SHA, scope, sha256, out);
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

static int sq_doc_list(store_backend_t *b, const store_scope_t *scope, store_doc_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_DOC_LIST, &st);
    if (rc == STORE_OK) {
        bind_scope(st, scope);
        rc = collect_docs(c, st, out, "list documents", false);
    }
    conn_put(b, c);
    return rc;
}

static int sq_doc_search(store_backend_t *b, const store_scope_t *scope, const char *query,
                         size_t limit, store_doc_list_t *out)
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
        bind_scope(st, scope);
        rc = collect_docs(c, st, out, "search documents", true);
    }
    conn_put(b, c);
    return rc;
}

/* How many documents use file `stored_name` into *n. */
static int count_file_refs(conn_t *c, const char *stored_name, int64_t *n)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_FILE_REFS, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, stored_name);
        rc = step_one(c, st, "count file uses");
        if (rc == STORE_OK)
            *n = sqlite3_column_int64(st, 0);
        else if (rc == STORE_ENOTFOUND)
            rc = STORE_EIO; /* an aggregate always gives a row */
        stmt_done(st);
    }
    return rc;
}

static int sq_doc_delete(store_backend_t *b, const store_scope_t *scope, const char *id,
                         store_doc_t *out, bool *file_unused)
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
    rc = stmt_get(c, ST_DOC_GET_W, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        bind_scope(st, scope);
        rc = query_doc(c, st, out, "read document");
    }
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_DOC_DELETE, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        rc = stmt_run(c, st, "delete document");
    }
    int64_t refs = 0;
    if (rc == STORE_OK)
        rc = count_file_refs(c, out->stored_name, &refs);
    *file_unused = rc == STORE_OK && refs == 0;
    rc = write_end(b, c, rc);
    if (rc != STORE_OK)
        *file_unused = false;
    conn_put(b, c);
    return rc;
}

static int sq_file_refs(store_backend_t *b, const char *stored_name, int64_t *n)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = count_file_refs(c, stored_name, n);
    conn_put(b, c);
    return rc;
}

static int sq_doc_set_shared(store_backend_t *b, const store_scope_t *scope, const char *id,
                             bool shared)
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
    store_doc_t d;
    store_doc_init(&d);
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_DOC_GET_W, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        bind_scope(st, scope);
        rc = query_doc(c, st, &d, "read document");
    }
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_DOC_SET_SHARED, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        sqlite3_bind_int(st, 2, shared);
        rc = stmt_run(c, st, "share document");
    }
    /* Out of other owners' sessions: their sets, then their one document. */
    static const stmt_id_t unshare[] = { ST_DOC_UNSHARE_SETS, ST_DOC_UNSHARE_SESSIONS };
    for (size_t i = 0; rc == STORE_OK && !shared && i < 2; i++) {
        rc = stmt_get(c, unshare[i], &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, id);
            bind_text(st, 2, d.owner_id);
            rc = stmt_run(c, st, stmt_sql[unshare[i]]);
        }
    }
    rc = write_end(b, c, rc);
    conn_put(b, c);
    store_doc_cleanup(&d);
    return rc;
}

/* Run one UPDATE/DELETE statement under the write mutex (autocommit) after
 * `bind` filled its parameters and the scope its scope parameters (if it
 * has any; NULL: local mode); *changes receives the rows it changed. */
typedef void (*binder_fn)(sqlite3_stmt *st, const void *arg);

static int write_one_scoped(store_backend_t *b, stmt_id_t id, const store_scope_t *scope,
                            binder_fn bind, const void *arg, int64_t *changes)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, id, &st);
    if (rc == STORE_OK) {
        bind(st, arg);
        bind_scope(st, scope);
        write_lock(b);
        rc = stmt_run(c, st, stmt_sql[id]);
        *changes = rc == STORE_OK ? sqlite3_changes64(c->db) : 0;
        write_unlock(b);
    }
    conn_put(b, c);
    return rc;
}

static int write_one(store_backend_t *b, stmt_id_t id, binder_fn bind, const void *arg,
                     int64_t *changes)
{
    return write_one_scoped(b, id, NULL, bind, arg, changes);
}

/* As write_one_scoped() for a statement that changes one row named by its
 * id: STORE_ENOTFOUND when it changed none. */
static int write_row_scoped(store_backend_t *b, stmt_id_t id, const store_scope_t *scope,
                            binder_fn bind, const void *arg)
{
    int64_t n = 0;
    int rc = write_one_scoped(b, id, scope, bind, arg, &n);
    return rc == STORE_OK && n == 0 ? STORE_ENOTFOUND : rc;
}

static int write_row(store_backend_t *b, stmt_id_t id, binder_fn bind, const void *arg)
{
    return write_row_scoped(b, id, NULL, bind, arg);
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

struct id_ocr {
    const char *id, *pages;
    int confidence;
};

static void bind_ocr(sqlite3_stmt *st, const void *arg)
{
    const struct id_ocr *a = arg;
    bind_text(st, 1, a->id);
    bind_text(st, 2, a->pages);
    bind_opt_int(st, 3, a->confidence);
}

static int sq_doc_set_ocr(store_backend_t *b, const char *id, const char *pages, int confidence)
{
    struct id_ocr a = {id, pages, confidence};
    return write_row(b, ST_DOC_SET_OCR, bind_ocr, &a);
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
    /* the new chunks are indexed after this transaction (fts_backfill) */
    if (rc == STORE_OK)
        rc = run_doc_stmt(c, ST_FTS_PENDING_SET, a->id, NULL, NULL);
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

/* Chunks indexed per write transaction by fts_backfill(): about 40 ms of
 * FTS5 work for chunks of 256 tokens, so that other writers (a chat
 * storing its turn) wait for one batch, not for a whole book's index. */
#define FTS_BATCH 256

struct fts_batch_args {
    const char *id;
    bool done;
};

/* One batch: the chunks from where chunk_fts_pending says the index stops;
 * the pending row goes when no chunk is left (or none is pending). */
static int fts_batch_body(conn_t *c, void *arg)
{
    struct fts_batch_args *a = arg;
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_FTS_PENDING_GET, &st);
    if (rc != STORE_OK)
        return rc;
    bind_text(st, 1, a->id);
    int src = sqlite3_step(st);
    int64_t from = src == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    rc = src == SQLITE_ROW || src == SQLITE_DONE ? STORE_OK
                                                 : sqlite_rc(c->db, src, "read pending index");
    stmt_done(st);
    if (rc != STORE_OK || from < 0) {
        a->done = true;
        return rc;
    }
    int64_t to = from + FTS_BATCH;
    rc = stmt_get(c, ST_FTS_INDEX_RANGE, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, from);
        sqlite3_bind_int64(st, 3, to);
        rc = stmt_run(c, st, "index chunks");
    }
    bool more = false;
    if (rc == STORE_OK && (rc = stmt_get(c, ST_FTS_MORE, &st)) == STORE_OK) {
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, to);
        src = sqlite3_step(st);
        more = src == SQLITE_ROW && sqlite3_column_int(st, 0) != 0;
        rc = src == SQLITE_ROW ? STORE_OK : sqlite_rc(c->db, src, "find chunks to index");
        stmt_done(st);
    }
    if (rc == STORE_OK && more && (rc = stmt_get(c, ST_FTS_PENDING_ADVANCE, &st)) == STORE_OK) {
        bind_text(st, 1, a->id);
        sqlite3_bind_int64(st, 2, to);
        rc = stmt_run(c, st, "advance pending index");
    }
    if (rc == STORE_OK && !more) {
        rc = run_doc_stmt(c, ST_FTS_PENDING_DONE, a->id, NULL, NULL);
        a->done = true;
    }
    return rc;
}

/* Index the chunks of document `id` that chunk_fts_pending lists, a batch
 * per write transaction. */
static int fts_backfill(struct store_backend *b, const char *id)
{
    struct fts_batch_args a = { id, false };
    int rc = STORE_OK;
    while (rc == STORE_OK && !a.done)
        rc = in_write(b, fts_batch_body, &a);
    return rc;
}

static int row_pending_id(sqlite3_stmt *st, void *ud)
{
    store_id_list_t *l = ud;
    const char *id = (const char *)sqlite3_column_text(st, 0);
    return id && store__id_list_push(l, id) != 0 ? STORE_ENOMEM : STORE_OK;
}

/* At open: finish the indexes a stopped process left half done. */
static int fts_backfill_all(struct store_backend *b)
{
    store_id_list_t l = { 0 };
    int rc = read_doc_rows(b, ST_FTS_PENDING_LIST, NULL, NULL, NULL, row_pending_id, &l, false);
    for (size_t i = 0; rc == STORE_OK && i < l.n; i++) {
        log_info("store: indexing the chunks of document %s (left unfinished)", l.ids[i]);
        rc = fts_backfill(b, l.ids[i]);
    }
    store_id_list_cleanup(&l);
    return rc;
}

static int sq_doc_set_chunks(store_backend_t *b, const char *id, store_chunk_src_t *src,
                             int64_t *n_out)
{
    struct chunks_args a = { id, src, n_out };
    int rc = in_write(b, set_chunks_body, &a);
    return rc == STORE_OK ? fts_backfill(b, id) : rc;
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
    write_lock(b);
    rc = run_doc_stmt(c, ST_PART_SET_CACHE, id, bind_part_cache, &a);
    if (rc == STORE_OK && sqlite3_changes64(c->db) == 0)
        rc = STORE_ENOTFOUND;
    write_unlock(b);
    conn_put(b, c);
    return rc;
}

/* ---- Sessions --------------------------------------------------------------- *
 *
 * A session row has two ids: sessions.id, the store's key, which messages
 * and session_documents refer to and which never leaves this file, and
 * client_id, the id the client chose (or the store made), unique per owner.
 * Every operation finds a session by (owner of the scope, client_id): a
 * client can only ever name sessions of the scope it acts in. */

/* The key of the scope's session `id` into key[STORE_ID_MAX + 1] and, when
 * doc is not NULL, its one document into *doc (heap copy, NULL for none).
 * STORE_ENOTFOUND if the scope has no such session. */
static int session_key(conn_t *c, const store_scope_t *scope, const char *id,
                       char key[STORE_ID_MAX + 1], char **doc)
{
    if (doc)
        *doc = NULL;
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_SES_KEY, &st);
    if (rc != STORE_OK)
        return rc;
    bind_text(st, 1, id);
    bind_scope(st, scope);
    rc = step_one(c, st, "find session");
    if (rc == STORE_OK) {
        const char *k = (const char *)sqlite3_column_text(st, 0);
        if (!k || (doc && col_dup(st, 1, doc)))
            rc = STORE_ENOMEM;
        else
            snprintf(key, STORE_ID_MAX + 1, "%s", k);
    }
    stmt_done(st);
    return rc;
}

static int session_read(conn_t *c, const store_scope_t *scope, const char *id,
                        store_session_t *out)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_SES_GET, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, id);
        bind_scope(st, scope);
        rc = query_session(c, st, out, "read session");
    }
    return rc;
}

/* STORE_OK when the scope may read every document of ids[0..n),
 * STORE_ENOTFOUND when not (for another user's private document too). */
static int docs_readable(conn_t *c, const store_scope_t *scope, const char *const *ids, size_t n)
{
    sqlite3_stmt *st;
    int rc = n ? stmt_get(c, ST_DOC_VISIBLE, &st) : STORE_OK;
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        bind_text(st, 1, ids[i]);
        bind_scope(st, scope);
        rc = step_one(c, st, "find document");
        stmt_done(st);
    }
    return rc;
}

/* A new session of the scope's owner, with a new key. */
static int session_insert(conn_t *c, const store_scope_t *scope, const char *id,
                          const char *document_id, const char *title, int64_t now_ms)
{
    char key[STORE_UUID_BUFSZ];
    int rc = document_id ? docs_readable(c, scope, &document_id, 1) : STORE_OK;
    if (rc == STORE_OK)
        rc = store_id_new(key);
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_SES_INSERT, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, key);
        bind_text(st, 2, scope_owner(scope));
        bind_text(st, 3, id);
        sqlite3_bind_int64(st, 4, now_ms);
        bind_text(st, 5, document_id);
        bind_text(st, 6, title);
        rc = stmt_run(c, st, "create session");
    }
    return rc;
}

static int sq_session_create(store_backend_t *b, const store_scope_t *scope, const char *id,
                             const char *document_id, const char *title, int64_t now_ms,
                             store_session_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc == STORE_OK) {
        rc = session_insert(c, scope, id, document_id, title, now_ms);
        if (rc == STORE_OK)
            rc = session_read(c, scope, id, out);
        rc = write_end(b, c, rc);
    }
    conn_put(b, c);
    return rc;
}

static int sq_session_ensure(store_backend_t *b, const store_scope_t *scope, const char *id,
                             const char *document_id, int64_t now_ms, store_session_t *out,
                             bool *created)
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
            bind_scope(st, scope);
            rc = stmt_run(c, st, "touch session");
        }
        if (rc == STORE_OK && sqlite3_changes64(c->db) == 0) {
            rc = session_insert(c, scope, id, document_id, NULL, now_ms);
            *created = rc == STORE_OK;
        }
        if (rc == STORE_OK)
            rc = session_read(c, scope, id, out);
        rc = write_end(b, c, rc);
        if (rc != STORE_OK)
            *created = false;
    }
    conn_put(b, c);
    return rc;
}

static int sq_session_get(store_backend_t *b, const store_scope_t *scope, const char *id,
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

static int sq_session_touch(store_backend_t *b, const store_scope_t *scope, const char *id,
                            int64_t now_ms)
{
    struct id_int a = {id, now_ms};
    return write_row_scoped(b, ST_SES_TOUCH, scope, bind_id_opt_int, &a);
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
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_SES_SET_DOC, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, key);
        bind_text(st, 2, a->n ? a->ids[0] : NULL);
        rc = stmt_run(c, st, "set session document");
    }
    if (rc == STORE_OK)
        rc = run_doc_stmt(c, ST_SESDOC_DELETE, key, NULL, NULL);
    if (rc == STORE_OK && a->n > 1)
        rc = insert_id_rows(c, ST_SESDOC_INSERT, key, a->ids, a->n);
    return rc;
}

static int sq_session_set_documents(store_backend_t *b, const store_scope_t *scope,
                                    const char *id, const char *const *ids, size_t n)
{
    struct set_docs_args a = { scope, id, ids, n };
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

static int sq_session_documents(store_backend_t *b, const store_scope_t *scope, const char *id,
                                store_id_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    /* One snapshot: the session's one document first (finding it also
     * says whether the session is the scope's), then its set. */
    bool txn = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    char key[STORE_ID_MAX + 1], *one = NULL;
    rc = session_key(c, scope, id, key, &one);
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_SESDOC_LIST, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, key);
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
    if (rc == STORE_OK && out->n == 0 && one)   /* no set: the one document */
        rc = store__id_list_push(out, one);
    free(one);
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

static int sq_session_set_title(store_backend_t *b, const store_scope_t *scope, const char *id,
                                const char *title)
{
    struct id_str a = {id, title};
    return write_row_scoped(b, ST_SES_SET_TITLE, scope, bind_id_str, &a);
}

static int sq_session_list(store_backend_t *b, const store_scope_t *scope, size_t limit,
                           store_session_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_SES_LIST, &st);
    if (rc == STORE_OK) {
        sqlite3_bind_int64(st, 1, sql_limit(limit));
        bind_scope(st, scope);
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

static int sq_session_delete(store_backend_t *b, const store_scope_t *scope, const char *id)
{
    return write_row_scoped(b, ST_SES_DELETE, scope, bind_id, id);
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

static int sq_msg_append(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                         store_role_t role, const char *content, bool incomplete,
                         const char *meta, int64_t now_ms, int64_t *id_out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = write_begin(b, c);
    if (rc == STORE_OK) {
        char key[STORE_ID_MAX + 1];
        rc = session_key(c, scope, session_id, key, NULL);
        sqlite3_stmt *st;
        if (rc == STORE_OK)
            rc = stmt_get(c, ST_MSG_INSERT, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, key);
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
            rc = stmt_get(c, ST_SES_TOUCH_KEY, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, key);
            sqlite3_bind_int64(st, 2, now_ms);
            rc = stmt_run(c, st, "touch session");
        }
        rc = write_end(b, c, rc);
    }
    conn_put(b, c);
    return rc;
}

static int sq_msg_list(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                       size_t limit, store_msg_list_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    /* One snapshot for the messages and, when there are none, whether
     * the session is there at all. */
    bool txn = sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_MSG_LIST, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, session_id);
        sqlite3_bind_int64(st, 2, sql_limit(limit));
        bind_scope(st, scope);
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
    if (rc == STORE_OK && out->n == 0) {
        char key[STORE_ID_MAX + 1];
        rc = session_key(c, scope, session_id, key, NULL);
    }
    if (txn)
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
    conn_put(b, c);
    return rc;
}

static int sq_msg_count(store_backend_t *b, const store_scope_t *scope, const char *session_id,
                        int64_t *n)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, ST_MSG_COUNT, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, session_id);
        bind_scope(st, scope);
        rc = step_one(c, st, "count messages");
        if (rc == STORE_OK)
            *n = sqlite3_column_int64(st, 0);
        stmt_done(st);
    }
    conn_put(b, c);
    return rc;
}

/* ---- Accounts ---------------------------------------------------------------- */

/* Read one row of statement `sid` (?1 = key) with row(st, out): STORE_OK,
 * STORE_ENOTFOUND or an error. */
static int read_one(conn_t *c, stmt_id_t sid, const char *key,
                    int (*row)(sqlite3_stmt *st, void *out), void *out)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, sid, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, key);
        rc = step_one(c, st, stmt_sql[sid]);
        if (rc == STORE_OK)
            rc = row(st, out);
        stmt_done(st);
    }
    return rc;
}

static int row_user0(sqlite3_stmt *st, void *out)
{
    return row_user(st, 0, out);
}

static int row_login0(sqlite3_stmt *st, void *out)
{
    return row_login(st, out);
}

static int row_token0(sqlite3_stmt *st, void *out)
{
    return row_token(st, out);
}

/* What a change to a user needs to know: whether they are an enabled admin
 * and how many enabled admins there are. */
typedef struct {
    store_user_role_t role;
    bool disabled;
    int64_t enabled_admins;
} user_state_t;

static int row_state(sqlite3_stmt *st, void *out)
{
    user_state_t *u = out;
    const char *role = (const char *)sqlite3_column_text(st, 0);
    u->role = role && strcmp(role, "admin") == 0 ? STORE_USER_ROLE_ADMIN : STORE_USER_ROLE_USER;
    u->disabled = sqlite3_column_int(st, 1) != 0;
    u->enabled_admins = sqlite3_column_int64(st, 2);
    return STORE_OK;
}

/* STORE_ECONFLICT when user *u is the last enabled admin. */
static int keep_an_admin(const user_state_t *u)
{
    bool last = u->role == STORE_USER_ROLE_ADMIN && !u->disabled && u->enabled_admins <= 1;
    return last ? STORE_ECONFLICT : STORE_OK;
}

/* Run statement `sid` with ?1 = id and the rest bound by bind (may be
 * NULL); *changes (may be NULL) receives the rows it changed. */
static int run_id_stmt(conn_t *c, stmt_id_t sid, const char *id, binder_fn bind,
                       const void *arg, int64_t *changes)
{
    sqlite3_stmt *st;
    int rc = stmt_get(c, sid, &st);
    if (rc != STORE_OK)
        return rc;
    bind_text(st, 1, id);
    if (bind)
        bind(st, arg);
    rc = stmt_run(c, st, stmt_sql[sid]);
    if (changes)
        *changes = rc == STORE_OK ? sqlite3_changes64(c->db) : 0;
    return rc;
}

struct user_args {
    const char *id, *name, *text;
    store_user_role_t role;
    bool flag;
    int64_t now;
    store_user_t *out;
};

static void bind_user_insert(sqlite3_stmt *st, const void *arg)
{
    const struct user_args *a = arg;
    bind_text(st, 2, a->name);
    bind_text(st, 3, a->text);
    bind_text(st, 4, store_user_role_name(a->role));
    sqlite3_bind_int64(st, 5, a->now);
}

static int user_create_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    int rc = run_id_stmt(c, ST_USER_INSERT, a->id, bind_user_insert, a, NULL);
    if (rc == STORE_OK)
        rc = read_one(c, ST_USER_GET, a->id, row_user0, a->out);
    return rc;
}

static int sq_user_create(store_backend_t *b, const char *id, const char *name,
                          const char *password_hash, store_user_role_t role, int64_t now_ms,
                          store_user_t *out)
{
    struct user_args a = { id, name, password_hash, role, false, now_ms, out };
    return in_write(b, user_create_body, &a);
}

static int sq_user_get(store_backend_t *b, const char *key, bool by_name, store_user_t *out)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    rc = read_one(c, by_name ? ST_USER_BY_NAME : ST_USER_GET, key, row_user0, out);
    conn_put(b, c);
    return rc;
}

static int row_user_item(sqlite3_stmt *st, void *ud)
{
    store_user_t u;
    store_user_init(&u);
    int rc = row_user(st, 0, &u);
    return rc == STORE_OK ? store__user_list_push(ud, &u) : rc;
}

static int sq_user_list(store_backend_t *b, store_user_list_t *out)
{
    return read_doc_rows(b, ST_USER_LIST, NULL, NULL, NULL, row_user_item, out, false);
}

static void bind_text2_now3(sqlite3_stmt *st, const void *arg)
{
    const struct user_args *a = arg;
    bind_text(st, 2, a->text);
    sqlite3_bind_int64(st, 3, a->now);
}

static void bind_flag2_now3(sqlite3_stmt *st, const void *arg)
{
    const struct user_args *a = arg;
    sqlite3_bind_int(st, 2, a->flag);
    sqlite3_bind_int64(st, 3, a->now);
}

static int set_role_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    user_state_t u;
    int rc = read_one(c, ST_USER_STATE, a->id, row_state, &u);
    if (rc == STORE_OK && a->role != STORE_USER_ROLE_ADMIN)
        rc = keep_an_admin(&u);
    if (rc == STORE_OK) {
        a->text = store_user_role_name(a->role);
        rc = run_id_stmt(c, ST_USER_SET_ROLE, a->id, bind_text2_now3, a, NULL);
    }
    if (rc == STORE_OK && a->role != STORE_USER_ROLE_ADMIN)
        rc = run_id_stmt(c, ST_TOKEN_DELETE_ADMIN, a->id, NULL, NULL, NULL);
    return rc;
}

static int sq_user_set_role(store_backend_t *b, const char *id, store_user_role_t role,
                            int64_t now_ms)
{
    struct user_args a = { id, NULL, NULL, role, false, now_ms, NULL };
    return in_write(b, set_role_body, &a);
}

static void bind_null2(sqlite3_stmt *st, const void *arg)
{
    (void)arg;
    sqlite3_bind_null(st, 2);
}

static int set_disabled_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    user_state_t u;
    int rc = read_one(c, ST_USER_STATE, a->id, row_state, &u);
    if (rc == STORE_OK && a->flag)
        rc = keep_an_admin(&u);
    if (rc == STORE_OK)
        rc = run_id_stmt(c, ST_USER_SET_DISABLED, a->id, bind_flag2_now3, a, NULL);
    if (rc == STORE_OK && a->flag)
        rc = run_id_stmt(c, ST_LOGIN_DELETE_USER, a->id, bind_null2, NULL, NULL);
    if (rc == STORE_OK && a->flag)
        rc = run_id_stmt(c, ST_TOKEN_DELETE_USER, a->id, NULL, NULL, NULL);
    return rc;
}

static int sq_user_set_disabled(store_backend_t *b, const char *id, bool disabled,
                                int64_t now_ms)
{
    struct user_args a = { id, NULL, NULL, STORE_USER_ROLE_USER, disabled, now_ms, NULL };
    return in_write(b, set_disabled_body, &a);
}

static int set_password_body(conn_t *c, void *arg)
{
    struct user_args *a = arg;
    int64_t n = 0;
    int rc = run_id_stmt(c, ST_USER_SET_PASSWORD, a->id, bind_text2_now3, a, &n);
    return rc == STORE_OK && n == 0 ? STORE_ENOTFOUND : rc;
}

static int sq_user_set_password(store_backend_t *b, const char *id, const char *password_hash,
                                int64_t now_ms)
{
    struct user_args a = { id, NULL, password_hash, STORE_USER_ROLE_USER, false, now_ms, NULL };
    return in_write(b, set_password_body, &a);
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
    int rc = read_one(c, ST_USER_STATE, a->id, row_state, &u);
    if (rc == STORE_OK)
        rc = keep_an_admin(&u);
    sqlite3_stmt *st;
    if (rc == STORE_OK)
        rc = stmt_get(c, ST_USER_DOCS, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, a->id);
        rc = collect_docs(c, st, a->docs, "read documents", false);
    }
    /* Everything of theirs goes by the foreign keys' cascades. */
    if (rc == STORE_OK)
        rc = run_id_stmt(c, ST_USER_DELETE, a->id, NULL, NULL, NULL);
    /* The files no document uses any more, each named once. */
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

static int sq_user_delete(store_backend_t *b, const char *id, store_doc_list_t *docs,
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

/* Two or three integer columns of one row of a statement, ?1 = key (may be
 * NULL: no parameter). */
static int read_ints(store_backend_t *b, stmt_id_t sid, const char *key, int64_t *v0,
                     int64_t *v1, int64_t *v2)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, sid, &st);
    if (rc == STORE_OK) {
        if (key)
            bind_text(st, 1, key);
        rc = step_one(c, st, stmt_sql[sid]);
        if (rc == STORE_ENOTFOUND)
            rc = STORE_EIO; /* aggregates always give a row */
        if (rc == STORE_OK) {
            *v0 = sqlite3_column_int64(st, 0);
            *v1 = sqlite3_column_int64(st, 1);
            if (v2)
                *v2 = sqlite3_column_int64(st, 2);
        }
        stmt_done(st);
    }
    conn_put(b, c);
    return rc;
}

static int sq_user_count(store_backend_t *b, int64_t *n_users, int64_t *n_admins)
{
    return read_ints(b, ST_USER_COUNT, NULL, n_users, n_admins, NULL);
}

static int sq_user_usage(store_backend_t *b, const char *id, int64_t *bytes, int64_t *n_docs)
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
    int rc = read_one(c, ST_USER_STATE, a->user_id, row_state, &u);
    if (rc == STORE_OK) {
        /* A clash would also fail the unique index; found first, it is a
         * clear refusal rather than a constraint error half-way. */
        sqlite3_stmt *st;
        rc = stmt_get(c, ST_ADOPT_CLASH, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, a->user_id);
            rc = step_one(c, st, "find session");
            stmt_done(st);
            rc = rc == STORE_OK ? STORE_ECONFLICT : rc == STORE_ENOTFOUND ? STORE_OK : rc;
        }
    }
    if (rc == STORE_OK)
        rc = run_id_stmt(c, ST_ADOPT_DOCS, a->user_id, NULL, NULL, a->n_docs);
    if (rc == STORE_OK)
        rc = run_id_stmt(c, ST_ADOPT_SESSIONS, a->user_id, NULL, NULL, a->n_sessions);
    return rc;
}

static int sq_adopt_unowned(store_backend_t *b, const char *user_id, int64_t *n_docs,
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

static void bind_login_insert(sqlite3_stmt *st, const void *arg)
{
    const struct login_args *a = arg;
    bind_text(st, 2, a->user_id);
    sqlite3_bind_int64(st, 3, a->now);
    sqlite3_bind_int64(st, 4, a->idle_ms);
    bind_text(st, 5, a->client_addr);
    bind_text(st, 6, a->user_agent);
}

static int login_create_body(conn_t *c, void *arg)
{
    struct login_args *a = arg;
    int64_t n = 0;
    int rc = run_id_stmt(c, ST_LOGIN_INSERT, a->hash, bind_login_insert, a, &n);
    if (rc == STORE_OK && n == 0)
        rc = STORE_ENOTFOUND;   /* no such user, or disabled */
    if (rc == STORE_OK)
        rc = read_one(c, ST_LOGIN_GET, a->hash, row_login0, a->out);
    return rc;
}

static int sq_login_create(store_backend_t *b, const char *hash, const char *user_id,
                           int64_t idle_ms, const char *client_addr, const char *user_agent,
                           int64_t now_ms, store_login_t *out)
{
    struct login_args a = { hash, user_id, client_addr, user_agent, idle_ms, now_ms, out };
    return in_write(b, login_create_body, &a);
}

/* The lookups of logins and tokens: one read of the record joined with its
 * user (on a reader connection, never waiting for a writer); a write only
 * when the record is due for a touch. A record deleted between the two (a
 * logout, a user disabled) is then not found. */
static int auth_lookup(store_backend_t *b, stmt_id_t lookup, stmt_id_t touch, const char *hash,
                       int64_t now_ms, int64_t touch_after_ms, void *rec,
                       int (*row)(sqlite3_stmt *st, void *rec), int user_col,
                       bool (*due)(const void *rec, int64_t before),
                       const char *(*key_of)(const void *rec), store_user_t *user)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st;
    rc = stmt_get(c, lookup, &st);
    if (rc == STORE_OK) {
        bind_text(st, 1, hash);
        sqlite3_bind_int64(st, 2, now_ms);
        rc = step_one(c, st, "look up credential");
        if (rc == STORE_OK)
            rc = row(st, rec);
        if (rc == STORE_OK)
            rc = row_user(st, user_col, user);
        stmt_done(st);
    }
    if (rc == STORE_OK && due(rec, now_ms - touch_after_ms)) {
        rc = stmt_get(c, touch, &st);
        if (rc == STORE_OK) {
            bind_text(st, 1, key_of(rec));
            sqlite3_bind_int64(st, 2, now_ms);
            write_lock(b);
            rc = stmt_run(c, st, stmt_sql[touch]);
            if (rc == STORE_OK && sqlite3_changes64(c->db) == 0)
                rc = STORE_ENOTFOUND;
            write_unlock(b);
        }
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

static int sq_login_lookup(store_backend_t *b, const char *hash, int64_t now_ms,
                           int64_t touch_after_ms, store_login_t *login, store_user_t *user)
{
    int rc = auth_lookup(b, ST_LOGIN_LOOKUP, ST_LOGIN_TOUCH, hash, now_ms, touch_after_ms, login,
                         row_login0, LOGIN_NCOLS, login_due, login_key, user);
    if (rc == STORE_OK && login_due(login, now_ms - touch_after_ms)) {
        /* as the touch left it (it never moves either backwards) */
        if (login->last_seen_at < now_ms)
            login->last_seen_at = now_ms;
        if (login->expires_at < now_ms + login->idle_ms)
            login->expires_at = now_ms + login->idle_ms;
    }
    return rc;
}

static int row_login_item(sqlite3_stmt *st, void *ud)
{
    store_login_t l;
    store_login_init(&l);
    int rc = row_login(st, &l);
    return rc == STORE_OK ? store__login_list_push(ud, &l) : rc;
}

static int sq_login_list(store_backend_t *b, const char *user_id, store_login_list_t *out)
{
    return read_doc_rows(b, ST_LOGIN_LIST, NULL, bind_id1, user_id, row_login_item, out, false);
}

static void bind_text2(sqlite3_stmt *st, const void *arg)
{
    bind_text(st, 2, arg);
}

static int login_delete_body(conn_t *c, void *arg)
{
    const char *const *a = arg;   /* hash, user_id */
    int64_t n = 0;
    int rc = run_id_stmt(c, ST_LOGIN_DELETE, a[0], bind_text2, a[1], &n);
    return rc == STORE_OK && n == 0 ? STORE_ENOTFOUND : rc;
}

static int sq_login_delete(store_backend_t *b, const char *hash, const char *user_id)
{
    const char *a[2] = { hash, user_id };
    return in_write(b, login_delete_body, a);
}

struct id_text_count {
    const char *id, *text;
    int64_t *n;
};

static void bind_itc_text2(sqlite3_stmt *st, const void *arg)
{
    bind_text(st, 2, ((const struct id_text_count *)arg)->text);
}

static int delete_user_logins_body(conn_t *c, void *arg)
{
    struct id_text_count *a = arg;
    return run_id_stmt(c, ST_LOGIN_DELETE_USER, a->id, bind_itc_text2, a, a->n);
}

static int sq_login_delete_user(store_backend_t *b, const char *user_id, const char *except_hash,
                                int64_t *n_deleted)
{
    struct id_text_count a = { user_id, except_hash, n_deleted };
    return in_write(b, delete_user_logins_body, &a);
}

static int sq_login_sweep(store_backend_t *b, int64_t now_ms, int64_t *n_deleted)
{
    return write_one(b, ST_LOGIN_SWEEP, bind_int, &now_ms, n_deleted);
}

/* ---- API tokens ---- */

struct token_args {
    const char *id, *user_id, *name, *hash;
    store_token_scope_t scope;
    int64_t expires_at, now;
    store_token_t *out;
};

static void bind_token_insert(sqlite3_stmt *st, const void *arg)
{
    const struct token_args *a = arg;
    bind_text(st, 2, a->user_id);
    bind_text(st, 3, a->name);
    bind_text(st, 4, a->hash);
    bind_text(st, 5, store_token_scope_name(a->scope));
    sqlite3_bind_int64(st, 6, a->now);
    bind_opt_int(st, 7, a->expires_at);
}

static int token_create_body(conn_t *c, void *arg)
{
    struct token_args *a = arg;
    user_state_t u;
    int rc = read_one(c, ST_USER_STATE, a->user_id, row_state, &u);
    if (rc == STORE_OK && u.disabled)
        rc = STORE_ENOTFOUND;
    if (rc == STORE_OK && a->scope == STORE_TOKEN_ADMIN && u.role != STORE_USER_ROLE_ADMIN)
        rc = STORE_EINVAL;
    if (rc == STORE_OK)
        rc = run_id_stmt(c, ST_TOKEN_INSERT, a->id, bind_token_insert, a, NULL);
    if (rc == STORE_OK)
        rc = read_one(c, ST_TOKEN_GET, a->id, row_token0, a->out);
    return rc;
}

static int sq_token_create(store_backend_t *b, const char *id, const char *user_id,
                           const char *name, const char *hash, store_token_scope_t scope,
                           int64_t expires_at, int64_t now_ms, store_token_t *out)
{
    struct token_args a = { id, user_id, name, hash, scope, expires_at, now_ms, out };
    return in_write(b, token_create_body, &a);
}

static int row_token_item(sqlite3_stmt *st, void *ud)
{
    store_token_t t;
    store_token_init(&t);
    int rc = row_token(st, &t);
    return rc == STORE_OK ? store__token_list_push(ud, &t) : rc;
}

static int sq_token_list(store_backend_t *b, const char *user_id, store_token_list_t *out)
{
    return read_doc_rows(b, ST_TOKEN_LIST, NULL, bind_id1, user_id, row_token_item, out, false);
}

static void bind_none(sqlite3_stmt *st, const void *arg)
{
    (void)st;
    (void)arg;
}

static int sq_token_list_all(store_backend_t *b, store_token_list_t *out)
{
    return read_doc_rows(b, ST_TOKEN_ALL, NULL, bind_none, NULL, row_token_item, out, false);
}

static int sq_collection_ids(store_backend_t *b, store_id_list_t *out)
{
    return read_doc_rows(b, ST_COLL_IDS, NULL, bind_none, NULL, row_id, out, false);
}

static bool token_due(const void *rec, int64_t before)
{
    const store_token_t *t = rec;
    return t->last_used_at < 0 || t->last_used_at <= before;
}

/* The touch names a token by its id (read with it), a login by its hash. */
static const char *token_key(const void *rec)
{
    return ((const store_token_t *)rec)->id;
}

static int sq_token_lookup(store_backend_t *b, const char *hash, int64_t now_ms,
                           int64_t touch_after_ms, store_token_t *token, store_user_t *user)
{
    int rc = auth_lookup(b, ST_TOKEN_LOOKUP, ST_TOKEN_TOUCH, hash, now_ms, touch_after_ms, token,
                         row_token0, TOKEN_NCOLS, token_due, token_key, user);
    if (rc == STORE_OK && token_due(token, now_ms - touch_after_ms) &&
        token->last_used_at < now_ms)
        token->last_used_at = now_ms;   /* as the touch left it */
    return rc;
}

static int token_delete_body(conn_t *c, void *arg)
{
    const char *const *a = arg;   /* id, user_id */
    int64_t n = 0;
    int rc = run_id_stmt(c, ST_TOKEN_DELETE, a[0], bind_text2, a[1], &n);
    return rc == STORE_OK && n == 0 ? STORE_ENOTFOUND : rc;
}

static int sq_token_delete(store_backend_t *b, const char *user_id, const char *id)
{
    const char *a[2] = { id, user_id };
    return in_write(b, token_delete_body, (void *)a);
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
    sqlite3_stmt *st;
    int rc = stmt_get(c, ST_AUDIT_INSERT, &st);
    if (rc == STORE_OK) {
        sqlite3_bind_int64(st, 1, e->ts);
        bind_text(st, 2, e->actor_id);
        bind_text(st, 3, e->actor_name);
        bind_text(st, 4, e->action);
        bind_text(st, 5, e->target);
        bind_text(st, 6, e->client_addr);
        bind_text(st, 7, e->detail);
        rc = stmt_run(c, st, "append audit entry");
    }
    if (rc == STORE_OK)
        *a->id_out = sqlite3_last_insert_rowid(c->db);
    /* Ids are given in order and only the oldest are ever deleted, so the
     * newest max_rows are those above id - max_rows. */
    if (rc == STORE_OK && a->max_rows > 0 && *a->id_out > a->max_rows) {
        int64_t below = *a->id_out - a->max_rows;
        rc = stmt_get(c, ST_AUDIT_TRIM, &st);
        if (rc == STORE_OK) {
            sqlite3_bind_int64(st, 1, below);
            rc = stmt_run(c, st, "prune audit log");
        }
    }
    return rc;
}

static int sq_audit_append(store_backend_t *b, const store_audit_t *e, int64_t max_rows,
                           int64_t *id_out)
{
    struct audit_args a = { e, max_rows, id_out };
    return in_write(b, audit_append_body, &a);
}

static int row_audit(sqlite3_stmt *st, void *ud)
{
    store_audit_t e;
    store_audit_init(&e);
    if (col_dup(st, 2, &e.actor_id) || col_dup(st, 3, &e.actor_name) ||
        col_dup(st, 4, &e.action) || col_dup(st, 5, &e.target) ||
        col_dup(st, 6, &e.client_addr) || col_dup(st, 7, &e.detail)) {
        store_audit_cleanup(&e);
        return STORE_ENOMEM;
    }
    e.id = sqlite3_column_int64(st, 0);
    e.ts = sqlite3_column_int64(st, 1);
    return store__audit_list_push(ud, &e);
}

static void bind_audit_filter(sqlite3_stmt *st, const void *arg)
{
    const store_audit_filter_t *f = arg;
    bind_text(st, 1, f->actor);
    bind_text(st, 2, f->action);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)f->limit);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)f->offset);
}

static int sq_audit_list(store_backend_t *b, const store_audit_filter_t *f,
                         store_audit_list_t *out)
{
    return read_doc_rows(b, ST_AUDIT_LIST, NULL, bind_audit_filter, f, row_audit, out, false);
}

static int sq_audit_prune(store_backend_t *b, int64_t max_rows, int64_t *n_deleted)
{
    return write_one(b, ST_AUDIT_PRUNE, bind_int, &max_rows, n_deleted);
}

/* ---- Periodic jobs ------------------------------------------------------------ */

struct job_args {
    const char *name;
    int64_t now, interval_ms;
};

static void bind_job(sqlite3_stmt *st, const void *arg)
{
    const struct job_args *j = arg;
    bind_text(st, 1, j->name);
    sqlite3_bind_int64(st, 2, j->now);
    sqlite3_bind_int64(st, 3, j->interval_ms);
}

static int sq_job_claim(store_backend_t *b, const char *name, int64_t now, int64_t interval_ms,
                        bool *claimed)
{
    struct job_args j = { name, now, interval_ms };
    int64_t n = 0;
    int rc = write_one(b, ST_JOB_CLAIM, bind_job, &j, &n);
    *claimed = rc == STORE_OK && n == 1;
    return rc;
}

struct setting_args {
    const char *key, *value;
    int64_t now;
};

static void bind_setting(sqlite3_stmt *st, const void *arg)
{
    const struct setting_args *x = arg;
    bind_text(st, 1, x->key);
    bind_text(st, 2, x->value);
    sqlite3_bind_int64(st, 3, x->now);
}

static int sq_setting_set(store_backend_t *b, const char *key, const char *value, int64_t now)
{
    struct setting_args x = { key, value, now };
    int64_t n = 0;
    return write_one(b, ST_SETTING_SET, bind_setting, &x, &n);
}

struct setting_out {
    char **value;
    int64_t *updated_at;
};

static int row_setting(sqlite3_stmt *st, void *out)
{
    struct setting_out *o = out;
    const char *v = (const char *)sqlite3_column_text(st, 0);
    *o->value = strdup(v ? v : "");
    *o->updated_at = sqlite3_column_int64(st, 1);
    return *o->value ? STORE_OK : STORE_ENOMEM;
}

static int sq_setting_get(store_backend_t *b, const char *key, char **value, int64_t *updated_at)
{
    conn_t *c;
    int rc = conn_get(b, &c);
    if (rc != STORE_OK)
        return rc;
    struct setting_out o = { value, updated_at };
    rc = read_one(c, ST_SETTING_GET, key, row_setting, &o);
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
    .doc_set_ocr = sq_doc_set_ocr,
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
    .doc_copy_content = sq_doc_copy_content,
    .doc_set_shared = sq_doc_set_shared,
    .file_refs = sq_file_refs,
    .user_create = sq_user_create,
    .user_get = sq_user_get,
    .user_list = sq_user_list,
    .user_set_role = sq_user_set_role,
    .user_set_disabled = sq_user_set_disabled,
    .user_set_password = sq_user_set_password,
    .user_delete = sq_user_delete,
    .user_count = sq_user_count,
    .user_usage = sq_user_usage,
    .adopt_unowned = sq_adopt_unowned,
    .login_create = sq_login_create,
    .login_lookup = sq_login_lookup,
    .login_list = sq_login_list,
    .login_delete = sq_login_delete,
    .login_delete_user = sq_login_delete_user,
    .login_sweep = sq_login_sweep,
    .token_create = sq_token_create,
    .token_list = sq_token_list,
    .token_lookup = sq_token_lookup,
    .token_delete = sq_token_delete,
    .audit_append = sq_audit_append,
    .audit_list = sq_audit_list,
    .audit_prune = sq_audit_prune,
    .job_claim = sq_job_claim,
    .token_list_all = sq_token_list_all,
    .collection_ids = sq_collection_ids,
    .setting_set = sq_setting_set,
    .setting_get = sq_setting_get,
};
