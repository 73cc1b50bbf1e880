/* store_sqlite.h — the SQLite backend of the store (see store.h).
 *
 * The embedded default: one database file in the data directory, in WAL
 * mode (readers never wait for the writer), foreign keys on, synchronous
 * NORMAL (a power cut may lose the last commits but never corrupts the
 * file), busy timeout 5 s (for another process holding the write lock,
 * such as a backup). The schema is created or migrated on open; its version
 * is PRAGMA user_version and PRAGMA application_id marks the file as
 * kvchat's. Tables are STRICT with CHECK constraints, so a bad value is
 * refused by the database itself, not only by store.c.
 *
 * Threading: a small pool of connections (up to STORE_SQLITE_POOL, opened
 * on demand), each used by one thread at a time and each with its own cache
 * of prepared statements; plus one process-wide write mutex taken around
 * every write transaction. Why this and not one connection behind a mutex:
 * with WAL, readers on their own connections run while a write is in
 * progress, and the HTTP server has one thread per connection whose reads
 * (document lists, chat history, a document's text of several MB) should
 * not queue behind an upload's insert (text plus its full-text index, tens
 * to hundreds of ms for a large text). Why the write mutex: SQLite allows
 * one writer at a time anyway, and a writer that waits in SQLite's busy
 * handler sleeps and polls (up to 100 ms per retry); waiting on a mutex
 * wakes it as soon as the previous write commits. Writes begin with BEGIN
 * IMMEDIATE, so a transaction never has to upgrade a read lock (which
 * fails with SQLITE_BUSY without waiting). A thread that finds every
 * connection in use waits for one; no connection is held between calls.
 * An in-memory database (":memory:") uses one connection, since each
 * connection would see a database of its own.
 *
 * This is the only file besides store_sqlite.c that knows the backend
 * exists; store_sqlite.c is the only file that includes sqlite3.h.
 */
#ifndef KVCHAT_APP_STORE_SQLITE_H
#define KVCHAT_APP_STORE_SQLITE_H

#include "app/store/store.h"

/* Most connections one store opens. */
#define STORE_SQLITE_POOL 4

/* Milliseconds a connection waits for a lock held by another process. */
#define STORE_SQLITE_BUSY_MS 5000

/* The schema version this build creates and migrates to. */
#define STORE_SQLITE_SCHEMA_VERSION 7

/* PRAGMA application_id of kvchat databases: "kvch". */
#define STORE_SQLITE_APP_ID 0x6b766368

/* The SQL of the migration from schema version v to v + 1, or NULL when
 * v is out of range; for tests that build a database of an older version. */
const char *store_sqlite_migration(int v);

/* The backend's function table (selected by store_open for "sqlite:" and
 * plain paths). */
extern const store_backend_ops_t store_sqlite_ops;

#endif
