/* kvstore.h — the engine's store of KV-cache snapshots, in RAM and on disk.
 *
 * An entry is one snapshot: the token sequence a sequence held when it was
 * taken, the opaque state blob (llama_state_seq_get_data's bytes; never
 * interpreted here) and metadata. Entries are indexed by a radix tree over
 * their tokens, so a request finds the longest cached prefix of its prompt.
 *
 * Tiers:
 *  - RAM: blobs kept in memory, up to ram_budget bytes, least recently used
 *    unpinned copies evicted first. Evicting a RAM copy of an entry that is
 *    already on disk just frees the memory; an entry not yet on disk is
 *    demoted (written to disk) when there is a disk tier, else dropped.
 *  - disk: one file per entry in cfg.dir, up to disk_budget bytes of files,
 *    least recently used unpinned files deleted first (to make room for a
 *    file about to be written, and at open). Files survive
 *    restarts (KVSTORE_RESUME) and carry the model fingerprint and context
 *    layout they are valid for, plus checksums (XXH3).
 *  - disk only: an entry stored by kvstore_insert_disk() (or moved there by
 *    kvstore_set_disk_only()) lives in its file alone: loads read the file
 *    and never copy it into the RAM tier, so many such entries (the parts
 *    of a long document) cannot push other entries out of RAM. The flag is
 *    kept in the file.
 *  - shared (optional, cfg.shared_dir): a directory on storage that several
 *    engines use at once (NFS or any POSIX filesystem), beside each one's
 *    own disk tier; see SHARED TIER below.
 * Pinned entries are never evicted from the RAM or disk tier; they may hold
 * more than a budget, and the budget then constrains the unpinned entries
 * only. Pins are local: the shared tier's budget ignores them.
 *
 * Salts: every entry belongs to one namespace, that of the cache_salt it
 * was stored under or that of no salt (kvstore_salt_t). Lookups, prefix
 * matches and walks see the entries of their own namespace only, so a
 * request under one salt can neither restore nor learn of (by timing or by
 * counts) an entry made under another salt or under none, and the reverse.
 * The store never sees a salt, only its SHA-256 (salt.h), which is what
 * entry files and listings carry. Budgets, LRU order and ids are shared by
 * all namespaces.
 *
 * Disk writes (files, header rewrites, deletions) are done by one writer
 * thread owned by the store, never by the caller: kvstore_insert() queues
 * the write and returns. Reads from disk happen in kvstore_load(), in the
 * calling thread; the copy of a loaded entry into the RAM tier is the
 * writer's too. A failing write (ENOSPC, EIO, any error) is logged once
 * and counted, and the entry stays in RAM only; the store keeps working.
 * When that RAM copy is evicted later the write is tried once more (the
 * demotion); if it fails again the entry is dropped.
 *
 * Loading from disk: the file is mapped from the page cache (no copy),
 * hashed there, and handed out as that mapping until the handle is
 * released. An entry that belongs in RAM (not disk only, within the RAM
 * budget) is then copied into the RAM tier by the writer thread, off the
 * caller's path, into the buffer of the last large blob the store freed
 * when its size suits (fresh memory costs more to fault in than the copy).
 *
 * Handles: lookups return entry handles (kvstore_handle_t). A handle keeps
 * its entry's tokens, and once loaded its blob, valid until
 * kvstore_release(), even if the entry is deleted, replaced or evicted in
 * the meantime. Loading a handle whose entry was deleted before the load
 * fails with KVSTORE_ENOTFOUND (the caller treats it as a miss).
 *
 * Hits: a lookup alone counts nothing. The first kvstore_load() of a handle
 * counts one hit for the tier the bytes came from (RAM or disk) and makes
 * the entry most recently used; kvstore_touch() does the same for a caller
 * that used the entry without loading it. One use is counted per handle.
 *
 * SHARED TIER. When an engine dies, another one takes its documents over
 * and restores their KV from the shared directory instead of computing it
 * again.
 *  - What goes there: every entry whose file the engine writes to its disk
 *    tier, by the same writer thread, right after that file (never on a
 *    request's path; a "tier": "disk" prefill is answered once both are
 *    written). Not only the disk-only entries: the engine taking a
 *    document over needs the conversation prefixes as much as the
 *    document's parts, and content-derived names make an entry that
 *    several engines computed one file.
 *  - Names: "<32 hex>.kvs", the XXH3-128 of the model fingerprint, the
 *    context layout, the salt hash and the tokens: the same entry made by
 *    two engines has one name. The file format is that of the disk tier
 *    (version 3), flags "disk only" and "salted" only (pins stay local).
 *    A file is written once: to "<name>.<16 hex>.tmp" (a name of its
 *    writer's own), fsync'd, then moved to its name without replacing an
 *    existing one (renameat2 RENAME_NOREPLACE, or link() + unlink() where
 *    the filesystem lacks it, as NFS does), and the directory fsync'd. An
 *    engine that finds the name present skips its write. Files are never
 *    modified afterwards: what changes (last use, pins, hits) stays in the
 *    engine's memory; only the file's access time is set on use (see
 *    Eviction).
 *  - Indexing: at open and then every shared_rescan_ms (a background
 *    thread), an engine lists the directory and reads the header and
 *    tokens of names it does not know yet, checked as for the disk tier
 *    (magic, version, fingerprint, layout, sizes, header checksum, and the
 *    name against the content). Valid files join the index (or are noted
 *    on the local entry of the same tokens and namespace); corrupt,
 *    truncated and foreign files (another model or layout) are skipped and
 *    counted (shared_skipped), once per name, and never deleted for that.
 *    Names that disappeared leave the index. A rescan costs one readdir
 *    plus the headers of new names. inotify is not used: it does not see
 *    files made by other NFS clients, so the rescan would be needed anyway.
 *  - Lookups rank a copy in RAM, then the local file, then the shared
 *    file; an entry found only in the shared tier is reported as
 *    KVSTORE_TIER_SHARED, loaded from there (read and hashed in blocks,
 *    not mapped: a file another host deletes while it is mapped would
 *    raise SIGBUS on NFS once its pages are reclaimed) and counted in
 *    hits_shared. A file gone when the load opens it (deleted by another
 *    engine's eviction, or replaced) is a miss (KVSTORE_ENOTFOUND,
 *    counted in shared_lost); once open, the bytes read stay valid.
 *  - Eviction, safe with several engines evicting at once: after each
 *    rescan, when the files of this model and layout in the directory
 *    (valid and corrupt ones) exceed shared_budget, the engine reads their
 *    times and deletes in one order every engine computes alike: oldest
 *    max(access time, modification time) first, ties by name; it deletes
 *    only files whose that time is older than shared_grace_ms (a file
 *    just written, or used by some engine within the grace period, is
 *    never deleted), and stops once within the budget. An engine that
 *    uses a shared entry sets the file's access time (utimensat, by the
 *    writer, at most every grace/2), so the order is least recently used
 *    across engines. Deletions are idempotent (ENOENT is success): two
 *    engines over the same budget choose the same oldest files, and the
 *    second's unlink finds them gone. The budget is enforced at each
 *    rescan, so the directory may exceed it by what was written since.
 *    Temporary files older than an hour (a writer that died) are removed.
 *    Clocks: times are the file server's, compared with the engine's;
 *    the grace period must exceed the clock skew between hosts.
 *  - Failures: a write that fails (a full shared disk, EIO) is logged
 *    once until a write succeeds again, counted (shared_write_failures)
 *    and leaves no file; the entry keeps its local copies.
 *  - Salts: shared files carry the salt's hash as local files do; entries
 *    from them join their own namespace only.
 *  - kvstore_delete() and kvstore_reset() leave shared files alone (other
 *    engines use them; the budget deletes them in time); a name whose
 *    entry was deleted here is not indexed again while that file stays.
 *    KVSTORE_RESET mode empties the disk tier only.
 *
 * Threading: every function may be called from any thread. One mutex guards
 * the index; it is never held during disk I/O or while hashing blobs.
 *
 * Errors: functions return 0 or a negative KVSTORE_E* code;
 * kvstore_strerror() names it. Out-parameters are untouched on failure
 * unless stated.
 */
#ifndef KVCHAT_ENGINE_KVSTORE_H
#define KVCHAT_ENGINE_KVSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    KVSTORE_OK = 0,
    KVSTORE_ENOMEM = -1,
    KVSTORE_EINVAL = -2,      /* bad argument or configuration */
    KVSTORE_ENOTFOUND = -3,   /* no such entry (or it was deleted meanwhile) */
    KVSTORE_ETOOBIG = -4,     /* blob larger than every tier may hold */
    KVSTORE_ENOSPACE = -5,    /* pinned entries fill the tiers; nothing kept */
    KVSTORE_EIO = -6,         /* disk read failed, or the directory is unusable */
    KVSTORE_ECORRUPT = -7,    /* file failed its checksum or size checks */
    KVSTORE_EBUSY = -8,       /* the directory is in use by another store */
};

/* The entry file format written (kvstore.c's header comment). Version 2:
 * XXH3 checksums and the disk-only flag; version 3: the salt's hash.
 * Files of version 2 still load (as entries without a salt); files of any
 * other version are skipped with a log line and removed at open. */
#define KVSTORE_FORMAT_VERSION 3

const char *kvstore_strerror(int rc);

/* Entry ids: 16 lowercase hex characters (a random 64-bit number). */
#define KVSTORE_ID_LEN 16

typedef struct kvstore kvstore_t;
typedef struct kvstore_handle kvstore_handle_t;

/* A namespace: the SHA-256 of a cache_salt (never the salt itself), or no
 * salt. A zeroed struct is "no salt", as is a NULL pointer wherever a
 * function takes one; `hash` is then ignored. */
#define KVSTORE_SALT_LEN 32
typedef struct {
    bool salted;
    unsigned char hash[KVSTORE_SALT_LEN];
} kvstore_salt_t;

/* Whether a and b name the same namespace (NULL: no salt). */
bool kvstore_salt_equal(const kvstore_salt_t *a, const kvstore_salt_t *b);

typedef enum {
    KVSTORE_TIER_NONE = 0,
    KVSTORE_TIER_RAM = 1,     /* bytes are in memory */
    KVSTORE_TIER_DISK = 2,    /* bytes must be read from the entry's file */
    KVSTORE_TIER_SHARED = 3,  /* bytes must be read from the shared tier */
} kvstore_tier_t;

/* "none" | "ram" | "disk" | "shared". */
const char *kvstore_tier_name(kvstore_tier_t tier);

typedef enum {
    KVSTORE_RESUME = 0,       /* index the valid entry files already in dir */
    KVSTORE_RESET = 1,        /* delete the entry files already in dir */
} kvstore_mode_t;

/* Store configuration; fill with kvstore_config_default() first. */
typedef struct {
    uint64_t ram_budget;      /* bytes of blobs kept in RAM (default 2 GiB) */
    uint64_t disk_budget;     /* bytes of entry files; 0 = no disk tier (dir
                               * is then ignored and never touched) */
    const char *dir;          /* entry directory, created if missing; required
                               * when disk_budget > 0 */
    uint64_t fingerprint;     /* model fingerprint (model_info_t.fingerprint) */
    const char *layout;       /* context KV layout (model_ctx_layout()); files
                               * load only into an equal string; NULL = "" */
    kvstore_mode_t mode;      /* default KVSTORE_RESUME */
    const char *shared_dir;   /* shared tier directory, created if missing;
                               * NULL = no shared tier. Needs a disk tier.
                               * It should hold the files of one model and
                               * layout: the budget counts no other files */
    uint64_t shared_budget;   /* bytes of entry files in shared_dir (default
                               * 10 GiB) */
    unsigned shared_rescan_ms; /* period of the background rescan (default
                               * 2000); 0 = none: kvstore_shared_rescan() */
    unsigned shared_grace_ms; /* files created or used more recently are
                               * never deleted (default 60000) */
} kvstore_config_t;

void kvstore_config_default(kvstore_config_t *cfg);

/* Open a store. Strings in cfg are copied. With a disk tier, the directory
 * is created if missing and locked against other stores (KVSTORE_EBUSY);
 * leftover temporary files are removed; in KVSTORE_RESET mode every entry
 * file is deleted; in KVSTORE_RESUME mode each entry file's header and
 * tokens (never its blob; the tokens are needed for the index) are read and
 * checked (magic, version, fingerprint, layout, token count against the file
 * size, header checksum): valid files are indexed in the disk tier,
 * any other entry file is logged and removed. Files beyond disk_budget are
 * then deleted, least recently modified first.
 * With a shared tier (which needs the disk tier: KVSTORE_EINVAL without),
 * its directory is created if missing and indexed once (a rescan, see
 * SHARED TIER; in both modes), and the rescan thread started.
 * On success *out owns the store (kvstore_close()). */
int kvstore_open(const kvstore_config_t *cfg, kvstore_t **out);

/* Wait for queued disk work, stop the writer, free everything. Entry files
 * stay (they are the disk tier). Every handle must have been released.
 * Accepts NULL. */
void kvstore_close(kvstore_t *s);

/* Store a snapshot of tokens[0..n) (n >= 1; copied), without a salt
 * (kvstore_insert_salted() for a namespace). The store takes
 * ownership of `blob` (len >= 1 bytes from malloc() or, better for large
 * blobs, hugemem_alloc(), as the store uses for blobs it reads from disk;
 * the store frees it with free()) on every return, success or failure; the
 * caller must not touch it afterwards.
 * An entry with the identical token sequence in the same namespace is
 * replaced: the new entry (a new id) keeps the old one's hit count and
 * stays pinned if it was.
 * The blob goes to RAM (evicting least recently used unpinned copies
 * beyond the budget) and, with a disk tier, is queued for the writer.
 * A blob larger than ram_budget goes to disk only.
 * If id_out is not NULL it receives the id (KVSTORE_ID_LEN + 1 bytes).
 * Returns KVSTORE_ETOOBIG when no tier can hold the blob, KVSTORE_ENOSPACE
 * when pinned entries fill RAM and the blob cannot go to disk instead (no
 * disk tier, or larger than disk_budget); nothing is stored then (an entry
 * it was replacing is gone too). */
int kvstore_insert(kvstore_t *s, const int32_t *tokens, int n, void *blob, size_t len,
                   bool pinned, char *id_out);

/* Store a snapshot in the disk tier only (see "disk only" above): as
 * kvstore_insert(), same ownership of `blob`, but the blob is not kept in
 * RAM: it is held (outside the RAM budget, counted as pending_bytes) until
 * the writer has written its file, then freed. Loads meanwhile use it;
 * later loads read the file and never promote it into RAM. Use
 * kvstore_when_written() to learn when the file is durable.
 * Returns KVSTORE_EINVAL without a disk tier, KVSTORE_ETOOBIG when the
 * file would be larger than disk_budget; nothing is stored then. Room is
 * made (or not: pinned files) by the writer; see kvstore_when_written(). */
int kvstore_insert_disk(kvstore_t *s, const int32_t *tokens, int n, void *blob, size_t len,
                        bool pinned, char *id_out);

/* kvstore_insert() (disk_only false) or kvstore_insert_disk() (true) in
 * the namespace `salt` (NULL: no salt; the struct is copied): the entry
 * replaces only an entry of the same tokens in the same namespace, and is
 * found only by lookups in it. Same ownership of `blob`, same errors. */
int kvstore_insert_salted(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *tokens, int n,
                          void *blob, size_t len, bool pinned, bool disk_only, char *id_out);

/* Move a stored entry to the disk tier for good, as if stored by
 * kvstore_insert_disk(): its RAM copy leaves the RAM tier (held for the
 * writer when its file is not written yet), later loads do not promote it,
 * and the flag is written in its file. KVSTORE_ENOTFOUND when no such id,
 * KVSTORE_EINVAL without a disk tier, KVSTORE_ETOOBIG when its file would
 * be larger than disk_budget (the entry is then left as it was). */
int kvstore_set_disk_only(kvstore_t *s, const char *id);

/* Call fn(ud, rc) once the entry's file is written and fsync'd (rc
 * KVSTORE_OK) or its write has failed: KVSTORE_EIO (write error, such as a
 * full filesystem; the entry is dropped unless it has a RAM copy),
 * KVSTORE_ENOSPACE (pinned files fill the disk budget), KVSTORE_ENOTFOUND
 * (no such entry, it was deleted first, or it has no file and none is
 * being written). fn runs exactly once: right away in the calling thread
 * when the outcome is known already (the file exists, or will not), else
 * from the store's writer thread when the write ends. It runs without the
 * store's lock (it may call into the store) and must be quick.
 * Returns 0; or KVSTORE_EINVAL / KVSTORE_ENOMEM, and then fn is never
 * called. */
typedef void (*kvstore_written_fn)(void *ud, int rc);
int kvstore_when_written(kvstore_t *s, const char *id, kvstore_written_fn fn, void *ud);

/* Best entries for a request of tokens[0..n), among the entries stored
 * without a salt (kvstore_lookup_salted() for a namespace):
 *  - full: the longest stored sequence that is wholly a prefix of tokens
 *    (full_len = its length; it may equal n);
 *  - partial: when some entry shares more leading tokens with the request
 *    than full_len, one such entry (the shortest among those sharing the
 *    most) and partial_len = the number of tokens shared. Its own sequence
 *    is longer than partial_len; restoring it needs a trim to partial_len.
 * Each handle is NULL when there is no such entry; the tiers tell where the
 * bytes are now. Release both handles with kvstore_release() (or
 * kvstore_match_release()). *match is always written; a complete miss
 * returns KVSTORE_OK with both handles NULL. */
typedef struct {
    kvstore_handle_t *full;
    int full_len;
    kvstore_tier_t full_tier;
    kvstore_handle_t *partial;
    int partial_len;
    kvstore_tier_t partial_tier;
} kvstore_match_t;

int kvstore_lookup(kvstore_t *s, const int32_t *tokens, int n, kvstore_match_t *match);

/* kvstore_lookup() among the entries of the namespace `salt` only (NULL:
 * those stored without a salt, which is what kvstore_lookup() searches).
 * A namespace with no entries is a complete miss. */
int kvstore_lookup_salted(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *tokens, int n,
                          kvstore_match_t *match);

/* Read access to the entry's blob: *blob points to *len bytes, valid until
 * the handle is released (the handle holds a reference; eviction or deletion
 * meanwhile does not free it). From RAM this is the stored copy, no copying.
 * From disk the file is mapped (see "Loading from disk") and its checksum
 * verified; the entry is then promoted into RAM in the background when it
 * fits the budget and is not disk only (kvstore_flush() waits for that). Counts one hit (first
 * load or touch of the handle only). Loading the same handle again returns
 * the same bytes.
 * Errors: KVSTORE_ENOTFOUND (entry deleted, replaced or evicted before its
 * bytes were read), KVSTORE_ECORRUPT (checksum or size mismatch) or
 * KVSTORE_EIO (read error); on the last two the failure is logged, the
 * entry is dropped and its file deleted. The caller treats every error as a
 * cache miss. */
int kvstore_load(kvstore_t *s, kvstore_handle_t *h, const void **blob, size_t *len);

/* Count a use of the entry without loading it through the store (hit,
 * last-used time, LRU position); no-op if the handle was already loaded or
 * touched. Accepts NULL. */
void kvstore_touch(kvstore_t *s, kvstore_handle_t *h);

/* Give up a handle (and the blob it loaded). Accepts NULL. */
void kvstore_release(kvstore_t *s, kvstore_handle_t *h);

/* Release both handles of a match and set them to NULL. */
void kvstore_match_release(kvstore_t *s, kvstore_match_t *m);

/* The entry's tokens: *tokens points to *n tokens valid until the handle is
 * released. */
void kvstore_get_tokens(const kvstore_handle_t *h, const int32_t **tokens, int *n);

/* Shorthands for kvstore_get_tokens(). */
const int32_t *kvstore_handle_tokens(const kvstore_handle_t *h);
int kvstore_handle_n_tokens(const kvstore_handle_t *h);

/* Copies of an entry's metadata. */
typedef struct {
    char id[KVSTORE_ID_LEN + 1];
    int n_tokens;
    size_t bytes;             /* blob size */
    kvstore_tier_t tier;      /* RAM when the bytes are in memory, else DISK
                               * with a local file, else SHARED */
    bool on_disk;             /* its file is written */
    bool shared;              /* a file in the shared tier holds it */
    bool disk_only;           /* loads never promote it into RAM */
    bool pinned;
    kvstore_salt_t salt;      /* its namespace (salt.salted false: none) */
    uint64_t hits;
    uint64_t created;         /* epoch ms */
    uint64_t last_used;       /* epoch ms */
} kvstore_entry_info_t;

/* Metadata of the handle's entry as of now. Once the entry has left the
 * store (deleted, replaced, dropped) the values are its last ones and the
 * tier is KVSTORE_TIER_NONE. */
void kvstore_handle_info(kvstore_t *s, const kvstore_handle_t *h, kvstore_entry_info_t *info);

/* Visit every entry whose tokens start with prefix[0..n) (n >= 0), shorter
 * before longer: fn(tokens, n_tokens, ud) with the entry's tokens, valid
 * only during the call. Runs under the store's lock: fn must be quick and
 * must not call into the store. A non-zero return from fn stops the walk
 * and is returned; otherwise 0, KVSTORE_EINVAL or KVSTORE_ENOMEM. */
typedef int (*kvstore_visit_fn)(const int32_t *tokens, int n, void *ud);
int kvstore_foreach_extending(kvstore_t *s, const int32_t *prefix, int n, kvstore_visit_fn fn,
                              void *ud);

/* kvstore_foreach_extending() over the entries of the namespace `salt`
 * only (NULL: those without a salt, as kvstore_foreach_extending()). */
int kvstore_foreach_extending_salted(kvstore_t *s, const kvstore_salt_t *salt,
                                     const int32_t *prefix, int n, kvstore_visit_fn fn, void *ud);

/* All entries, most recently used first. *out is a malloc'd array of *n
 * copies (caller frees with free(); NULL when *n is 0). */
int kvstore_list(kvstore_t *s, kvstore_entry_info_t **out, size_t *n);

typedef struct {
    size_t entries;
    size_t entries_ram;       /* with their bytes in memory */
    size_t entries_disk;      /* with a written file */
    uint64_t ram_bytes;       /* blobs counted against ram_budget */
    uint64_t disk_bytes;      /* entry files (including one being written) */
    uint64_t pending_bytes;   /* blobs kept only until their write finishes */
    uint64_t ram_budget, disk_budget;
    uint64_t lookups;
    uint64_t hits_ram;        /* loads served from memory */
    uint64_t hits_disk;       /* loads read from disk */
    uint64_t touches;         /* uses counted by kvstore_touch() */
    uint64_t evictions_ram;   /* RAM copies evicted */
    uint64_t evictions_disk;  /* files deleted for the disk budget */
    uint64_t dropped;         /* entries that left both tiers by eviction */
    uint64_t disk_writes;     /* files written */
    uint64_t disk_write_failures;
    uint64_t disk_read_failures;   /* corrupt or unreadable on load */
    size_t pending_writes;    /* files queued or being written */
    uint64_t spare_bytes;     /* a freed blob's buffer kept for the next
                               * read from disk (outside both budgets) */
    /* shared tier (all zero without one) */
    size_t entries_shared;    /* indexed entries with a shared file */
    uint64_t shared_bytes;    /* files of the directory as of the last rescan */
    uint64_t shared_budget;
    uint64_t hits_shared;     /* loads read from the shared tier */
    uint64_t shared_writes;   /* files written there */
    uint64_t shared_write_skips;    /* names found present: not written */
    uint64_t shared_write_failures;
    uint64_t shared_skipped;  /* corrupt, truncated or foreign files seen */
    uint64_t shared_read_failures;  /* failed their checksum or a read on load */
    uint64_t shared_lost;     /* deleted by another engine before a load: misses */
    uint64_t shared_evictions;      /* files this store deleted for the budget */
    uint64_t shared_rescans;
} kvstore_stats_t;

void kvstore_stats(kvstore_t *s, kvstore_stats_t *out);

/* Delete one entry (RAM copy now; file by the writer). Handles already
 * holding it stay valid. KVSTORE_ENOTFOUND when no such id. Ids are found
 * by a scan of the entries (the store holds thousands at most). */
int kvstore_delete(kvstore_t *s, const char *id);

/* Delete every entry, pinned ones too, then wait until their files are
 * gone (files of entries still held by handles go when those are
 * released). */
int kvstore_reset(kvstore_t *s);

/* Pin or unpin an entry; the flag is also rewritten in its file.
 * KVSTORE_ENOTFOUND when no such id. */
int kvstore_set_pinned(kvstore_t *s, const char *id, bool pinned);

/* Wait until the writer has nothing queued or in progress. */
void kvstore_flush(kvstore_t *s);

/* Rescan the shared directory now, in the calling thread (see SHARED
 * TIER: new names indexed, vanished ones dropped, then eviction by the
 * budget), as the rescan thread does every shared_rescan_ms. One rescan
 * runs at a time; a call waits for one in progress. Returns 0,
 * KVSTORE_EINVAL without a shared tier, KVSTORE_EIO when the directory
 * cannot be listed (the index is left as it was) or KVSTORE_ENOMEM. */
int kvstore_shared_rescan(kvstore_t *s);

/* The 64-bit checksum of entry files: XXH3-64 of data[0..len) with `seed`
 * (xxHash's XXH3_64bits_withSeed; the same value on every platform, one
 * shot or streamed). Exposed for tests, fuzzers and benchmarks, which must
 * not include xxhash.h themselves (kvstore.c is its one wrapper). */
uint64_t kvstore_checksum(const void *data, size_t len, uint64_t seed);

#endif
