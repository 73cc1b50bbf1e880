/* kvstore.c — KV-cache snapshot store: radix index, RAM tier, disk tier,
 * writer thread; see kvstore.h for the contract.
 *
 * ENTRY FILE FORMAT (version 3, KVSTORE_FORMAT_VERSION). One file per
 * entry, named "<id>.kv" with <id> the entry's 16 lowercase hex digits, in
 * the store directory. All integers are little-endian, fixed width; no
 * padding.
 *
 *   offset      size  field
 *   0           8     magic "KVCHATKV"
 *   8           4     format version (u32) = 3
 *   12          8     model fingerprint (u64)
 *   20          4     layout length L (u32, <= 1024)
 *   24          L     layout string (bytes, no NUL), the context's KV layout
 *   24+L        8     n_tokens (u64, 1 .. 2^24)
 *   32+L        8     blob size B (u64, >= 1)
 *   40+L        8     created (u64, epoch milliseconds)
 *   48+L        4     flags (u32): bit 0 = pinned, bit 1 = disk only,
 *                     bit 2 = salted; other bits zero
 *   52+L        4     reserved (u32) = 0
 *   56+L        8     header checksum (u64)
 *   64+L        8     blob checksum (u64)
 *   72+L        32    salt hash: the SHA-256 of the cache_salt the entry
 *                     was stored under when salted, else 32 zero bytes
 *   H = 104+L   4*n   tokens (i32 each)
 *   H+4n        B     blob (llama_state_seq_get_data bytes, opaque)
 *
 * The file size is exactly H + 4n + B. The header checksum is
 * kvstore_checksum(tokens, 4n, kvstore_checksum(header[0..H) with the
 * header-checksum field zeroed, H, 0)): it covers every header field (the
 * salt hash too) and the tokens, which are read and verified when a store
 * resumes. The blob checksum is kvstore_checksum(blob, B, 0), verified on
 * every load. kvstore_checksum is XXH3-64 with a seed. The salt itself is
 * never written anywhere.
 * Version 2 is this layout without the salt hash (H = 72+L) and without
 * the salted flag: such files still load, as entries without a salt, and
 * keep their version when their header is rewritten (pinning); new files
 * are always version 3. Version 1 had the version 2 layout with a
 * checksum of our own and no disk-only flag; its files, like those of any
 * other version, are skipped with a log line and removed at open (the
 * entries are computed again when next needed).
 * Files are written to "<id>.kv.tmp", fsync'd, renamed to "<id>.kv", and
 * the directory is fsync'd, so a crash leaves either the whole file or a
 * temporary one (removed at the next open). The directory also holds
 * ".kvstore.lock", flock'ed while a store has it open so that two engines
 * never share (and delete each other's) files; any other file in the
 * directory is left alone. Changing the pinned flag later
 * rewrites the header in place; a torn rewrite fails the header checksum
 * and the entry is discarded at the next open, never loaded wrongly.
 *
 * CHECKSUM. XXH3-64 (xxHash 0.8, linked as a library; this file is its one
 * includer). On x86-64 the library's runtime dispatch picks its AVX2 or
 * AVX-512 code (several times the bandwidth of its SSE2 default: 46 GB/s
 * against 13 on the benchmark machine); the digest is the same either way,
 * and the same whether computed at once or streamed in pieces.
 *
 * LOADS FROM DISK. The file is mapped, its pages populated from the page
 * cache (reading from disk what is not there) with MADV_POPULATE_READ,
 * which reports an I/O error as an error rather than as SIGBUS later, the
 * blob is hashed in place, and the mapping is the blob the handle holds
 * until it is released: the caller's copy into the context is then the
 * only pass over the bytes besides the hash. Measured, 29 MB in the page
 * cache, load and copy into a slot: mapped 4.2-5.0 ms; read into a buffer
 * in 1 MiB blocks, each hashed as it arrives, then copied 5.5-5.8 ms (read
 * and copy are two passes); plain read() of the file 2.0-2.6 ms. An entry
 * that belongs in RAM (not disk only, within the RAM budget) is copied
 * from that mapping into a RAM buffer by the writer thread afterwards, off
 * the caller's path (JOB_PROMOTE); until then it stays in the disk tier.
 * A fresh buffer of tens of MB costs more than the copy into it (its pages
 * are faulted in: on the benchmark machine, a virtual machine, 60 ms for
 * 29 MB against 5 ms into a buffer used before), so the buffer of the last
 * large blob the store freed (an evicted RAM copy, say) is kept as the
 * spare and a RAM copy goes into it when the size is about right (not
 * over an eighth larger).
 * A mapped page that the kernel reclaims under memory pressure before the
 * caller has used it and then fails to read again, or a file truncated by
 * another process meanwhile, would raise SIGBUS; entry files are only
 * ever replaced by rename and deleted by this store, never truncated. A
 * kernel without MADV_POPULATE_READ (before Linux 5.14) reads the blob in
 * 1 MiB blocks, hashed as they arrive, into the spare or a fresh buffer,
 * which becomes the RAM copy at once.
 *
 * NAMESPACES. Entries stored without a salt are indexed in `index`, the
 * radix tree over tokens they always had. Each salt's entries have a tree
 * of their own, found in `salted`: a radix tree keyed by the salt hash's
 * eight 32-bit words, whose values are those trees. A salt's tree is made
 * with its first entry and freed with its last. A lookup or walk under a
 * salt (or under none) searches that one tree, so it cannot match, count
 * or time anything of another namespace: no key of one tree is ever
 * compared with another's, whatever values the tokens take.
 *
 * CONCURRENCY. One mutex guards everything below except an entry's tokens,
 * which are immutable. It is released around all file I/O and checksum
 * work. Entries and blobs are reference counted (under the mutex): the
 * index holds one reference, every handle one, a queued writer job one; a
 * blob is referenced by its entry's RAM slot, its pending-write slot, its
 * promote slot (a loaded mapping the writer is to copy into RAM), and
 * each handle that loaded it; the store's spare buffer is a blob with no
 * reference. Memory is freed after the mutex is dropped
 * (struct reap). All file mutations (writes, header rewrites, deletions)
 * are done by the writer thread in queue order, so the deletion of an
 * entry's file can never overtake a later rewrite of the same name. The
 * only file I/O outside the writer is reading blobs in kvstore_load(),
 * the directory scan in kvstore_open(), and the shared tier's rescans.
 *
 * SHARED TIER (see kvstore.h for the rules). Shared files use the entry
 * format above (always version 3, never the pinned flag), under names
 * "<32 hex>.kvs" derived from the content (sh_name_of), so they need no
 * lock file: several stores write, read and delete there at once. The
 * writer writes them (write_shared_file, right after the local file) and
 * sets their access times (JOB_SH_TOUCH); a rescan (kvstore_shared_rescan,
 * by the rescan thread or a caller, one at a time under scan_lock, which
 * is taken before the mutex) lists the directory, reads new names'
 * headers without the mutex, then indexes them under it, and evicts
 * (sh_evict). Its list of the names seen (sh_known, sorted) is what makes
 * a rescan cost one readdir plus the new headers. An entry may have a RAM
 * copy, a local file and a shared file at once; it is SHARED for lookups
 * only when the shared file is all it has. Shared files are read, never
 * mapped (kvstore.h says why), and checked against the inode indexed: a
 * name deleted and written again by others is a miss, and its name is
 * put on sh_recheck so that the next rescan reads the new file.
 *
 * Entry states: in the index or not (deleted / replaced / dropped); a RAM
 * copy (counted in ram_bytes, on the RAM LRU list) or not; a written file
 * (on_disk, counted in disk_bytes, on the disk LRU list) or not; a pending
 * blob held for a queued or running write (with the kvstore_when_written
 * waiters it will tell); a shared file (shared, on the sh list) or not.
 * An indexed entry always has at least one of: RAM copy, pending blob,
 * file, shared file.
 */
#include "engine/kvstore.h"

#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>
#if defined(__x86_64__) || defined(_M_X64)
/* XXH3_64bits_withSeed and XXH3_64bits_update become their runtime
 * dispatched (AVX2 / AVX-512) versions. */
#include <xxh_x86dispatch.h>
#endif

#include "common/log.h"
#include "engine/hugemem.h"
#include "engine/radix.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* Tokens are written from and read into memory as they are; the file
 * format is little-endian. */
#error "kvstore.c assumes a little-endian host"
#endif

#define KV_MAGIC "KVCHATKV"
#define KV_VERSION ((uint32_t)KVSTORE_FORMAT_VERSION)
#define KV_MAX_LAYOUT 1024u
#define KV_MAX_TOKENS (1 << 24)
#define KV_VERSION_UNSALTED 2u          /* still loaded: no salt hash */
#define KV_HDR_HEAD 24u                 /* magic, version, fingerprint, L */
#define KV_HDR_TAIL_V2 48u              /* n, B, created, flags, reserved, sums */
#define KV_SALT_AT 48u                  /* the salt hash, in the tail (v3) */
#define KV_HDR_TAIL (KV_SALT_AT + KVSTORE_SALT_LEN)
#define KV_HDR_MAX (KV_HDR_HEAD + KV_MAX_LAYOUT + KV_HDR_TAIL)
#define KV_FLAG_PINNED 1u
#define KV_FLAG_DISK 2u                  /* disk only */
#define KV_FLAG_SALTED 4u                /* the salt hash is set (v3) */
#define KV_FLAGS_V2 (KV_FLAG_PINNED | KV_FLAG_DISK)
#define KV_FLAGS_KNOWN (KV_FLAGS_V2 | KV_FLAG_SALTED)
#define KV_SALT_WORDS (KVSTORE_SALT_LEN / 4)   /* the key of a salt's tree */
#define KV_LOCK_NAME ".kvstore.lock"
#define KV_READ_CHUNK ((size_t)1 << 20)  /* read, then hash while in L2 */
#define KV_SPARE_MIN ((size_t)4 << 20)   /* smaller freed blobs are not kept */
#define KV_NAME_MAX 32                   /* "<16 hex>.kv.tmp" + NUL */
#define KV_SH_ID_LEN 32                  /* hex digits of a shared file's name */
#define KV_SH_SUFFIX ".kvs"
#define KV_SH_NAME_MAX 64                /* "<32 hex>.kvs.<16 hex>.tmp" + NUL */
#define KV_SH_TMP_AGE_MS (3600ull * 1000u)  /* an older temporary file is abandoned */

/* ------------------------------------------------------------------ */
/* checksum                                                            */

uint64_t kvstore_checksum(const void *data, size_t len, uint64_t seed)
{
    return XXH3_64bits_withSeed(data, len, seed);
}

/* ------------------------------------------------------------------ */
/* types                                                               */

struct blob {
    struct blob *free_next;   /* reap list */
    unsigned refs;            /* under the store mutex */
    size_t len;
    void *data;               /* len bytes, inside mem */
    void *mem;                /* malloc'd (free()), or a file mapping */
    size_t cap;               /* bytes at mem (allocation or mapping) */
    bool mapped;              /* mem is mmap'ed (munmap()) */
};

/* One kvstore_when_written() call waiting for the writer. */
struct waiter {
    struct waiter *next;
    kvstore_written_fn fn;
    void *ud;
};

enum { JOB_WRITE = 1, JOB_HEADER = 2, JOB_UNLINK = 4, JOB_PROMOTE = 8, JOB_SH_TOUCH = 16 };

struct entry {
    struct entry *prev, *next;             /* all indexed entries */
    struct entry *ram_prev, *ram_next;     /* RAM LRU; head = most recent */
    struct entry *disk_prev, *disk_next;   /* disk LRU; head = most recent */
    struct entry *job_next;                /* writer queue */
    struct entry *free_next;               /* reap list */
    unsigned jobs;                         /* JOB_* bits while queued */
    unsigned refs;
    char name[KVSTORE_ID_LEN + 1];         /* the id, hex */
    int32_t *tokens;                       /* immutable while the entry lives */
    int n_tokens;
    size_t bytes;                          /* blob size */
    uint64_t hdr_bytes;                    /* file offset of the tokens */
    uint64_t file_bytes;
    struct blob *ram;                      /* RAM copy, counted in ram_bytes */
    struct blob *pending;                  /* held for the writer */
    struct blob *promote;                  /* a loaded mapping to copy into RAM */
    struct waiter *waiters;                /* told when the write ends */
    uint64_t bsum;                         /* blob checksum once written/read */
    uint64_t created, last_used, hits;
    int loading;                           /* loads reading the file now */
    bool in_index;
    bool on_disk;                          /* written file, in the disk tier */
    bool has_file;                         /* a file exists to delete at the end */
    bool pinned;
    bool disk_only;                        /* loads never promote it */
    uint32_t file_flags;                   /* KV_FLAG_* as written in the file */
    uint32_t file_version;                 /* its file's format (2 or 3) */
    kvstore_salt_t salt;                   /* its namespace; immutable */
    /* shared tier (SHARED TIER in kvstore.h) */
    struct entry *sh_prev, *sh_next;       /* entries with a shared file */
    bool shared;                           /* a shared file holds it */
    char sh_name[KV_SH_ID_LEN + 1];        /* that file's name, hex */
    uint64_t sh_hdr_bytes, sh_file_bytes;  /* as for the local file */
    uint64_t sh_bsum;                      /* its blob checksum */
    uint64_t sh_ino;                       /* its inode: a replaced file is a miss */
    uint64_t sh_touched;                   /* epoch ms of the last access-time update */
};

/* A name in the shared directory as the last rescan saw it. */
enum { SH_VALID = 0, SH_BAD = 1, SH_FOREIGN = 2 };
struct shfile {
    char name[KV_SH_ID_LEN + 1];
    unsigned char kind;                    /* SH_*: BAD counts in the budget,
                                            * FOREIGN does not */
    uint64_t bytes;
    uint64_t when;                         /* eviction order key (epoch ms) */
};

struct kvstore_handle {
    struct entry *e;
    struct blob *blob;                     /* set by the first load */
    bool used;                             /* a hit was counted */
};

struct kvstore {
    pthread_mutex_t lock;
    pthread_cond_t work;                   /* queue non-empty or stop */
    pthread_cond_t idle;                   /* queue empty and writer idle */
    uint64_t ram_budget, disk_budget;
    bool disk_tier;
    char *dir;
    char *layout;
    uint32_t layout_len;
    uint64_t fingerprint;
    kvstore_mode_t mode;
    int dir_fd, lock_fd;
    uint64_t id_state;

    radix_t *index;                        /* tokens -> struct entry *, no salt */
    radix_t *salted;                       /* salt hash words -> radix_t * of
                                            * that salt's entries (NAMESPACES) */
    struct entry *all;                     /* indexed entries */
    size_t n_entries;
    struct entry *ram_head, *ram_tail;
    struct entry *disk_head, *disk_tail;
    uint64_t ram_bytes, disk_bytes;
    struct blob *spare;                    /* a freed buffer for the next read */

    struct entry *q_head, *q_tail;
    size_t n_pending_writes;
    bool writer_busy, stop, writer_started;
    pthread_t writer;

    kvstore_stats_t st;                    /* counters only */

    /* shared tier */
    bool shared_tier;
    char *sh_dir;
    int sh_fd;
    uint64_t sh_budget;
    unsigned sh_rescan_ms, sh_grace_ms;
    struct entry *sh_head;                 /* entries with a shared file */
    bool sh_write_failing;                 /* logged; quiet until a success */
    bool sh_list_failing;                  /* likewise for listing (scan_lock) */
    pthread_mutex_t scan_lock;             /* one rescan at a time; guards
                                            * sh_known. Taken before `lock` */
    struct shfile *sh_known;               /* sorted by name */
    size_t n_sh_known;
    struct shfile *sh_recheck;             /* names a load found gone or
                                            * replaced: read again at the
                                            * next rescan (under `lock`) */
    size_t n_sh_recheck;
    pthread_cond_t sh_wake;                /* the rescan thread's timer; stop */
    bool sh_stop, scanner_started;
    pthread_t scanner;
};

/* Things to free (and waiters to call) once the mutex is released. */
struct reap {
    struct blob *blobs;
    struct entry *entries;
    struct waiter *waiters;
    int waiters_rc;
};

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

const char *kvstore_strerror(int rc)
{
    switch (rc) {
    case KVSTORE_OK: return "ok";
    case KVSTORE_ENOMEM: return "out of memory";
    case KVSTORE_EINVAL: return "invalid argument";
    case KVSTORE_ENOTFOUND: return "no such cache entry";
    case KVSTORE_ETOOBIG: return "snapshot larger than the cache budgets";
    case KVSTORE_ENOSPACE: return "no room: pinned entries fill the cache";
    case KVSTORE_EIO: return "cache disk I/O error";
    case KVSTORE_ECORRUPT: return "cache entry file is corrupt";
    case KVSTORE_EBUSY: return "cache directory in use by another process";
    default: return "unknown kvstore error";
    }
}

const char *kvstore_tier_name(kvstore_tier_t tier)
{
    switch (tier) {
    case KVSTORE_TIER_RAM: return "ram";
    case KVSTORE_TIER_DISK: return "disk";
    case KVSTORE_TIER_SHARED: return "shared";
    default: return "none";
    }
}

void kvstore_config_default(kvstore_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->ram_budget = (uint64_t)2 << 30;
    cfg->disk_budget = 0;
    cfg->dir = NULL;
    cfg->fingerprint = 0;
    cfg->layout = "";
    cfg->mode = KVSTORE_RESUME;
    cfg->shared_dir = NULL;
    cfg->shared_budget = (uint64_t)10 << 30;
    cfg->shared_rescan_ms = 2000;
    cfg->shared_grace_ms = 60000;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put32(unsigned char *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static void put64(unsigned char *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static void file_name(char *out, const char *id, bool tmp)
{
    snprintf(out, KV_NAME_MAX, "%s%s", id, tmp ? ".kv.tmp" : ".kv");
}

/* Is name "<16 lowercase hex>" followed by exactly `suffix`? */
static bool name_matches(const char *name, const char *suffix)
{
    for (int i = 0; i < KVSTORE_ID_LEN; i++) {
        char c = name[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return strcmp(name + KVSTORE_ID_LEN, suffix) == 0;
}

/* The header size of a file of format `version` (2 or 3). */
static uint64_t hdr_size(const kvstore_t *s, uint32_t version)
{
    return KV_HDR_HEAD + s->layout_len +
           (version == KV_VERSION_UNSALTED ? KV_HDR_TAIL_V2 : KV_HDR_TAIL);
}

/* The KV_FLAG_* bits of e as they should be in its file. */
static uint32_t entry_flags(const struct entry *e)
{
    return (e->pinned ? KV_FLAG_PINNED : 0) | (e->disk_only ? KV_FLAG_DISK : 0) |
           (e->salt.salted ? KV_FLAG_SALTED : 0);
}

/* Write the header of e into p (KV_HDR_MAX bytes) with the given flags, in
 * format `version` (2 or 3); returns its size. */
static size_t hdr_encode(const kvstore_t *s, unsigned char *p, const struct entry *e,
                         uint32_t version, uint32_t flags, uint64_t bsum)
{
    memcpy(p, KV_MAGIC, 8);
    put32(p + 8, version);
    put64(p + 12, s->fingerprint);
    put32(p + 20, s->layout_len);
    memcpy(p + KV_HDR_HEAD, s->layout, s->layout_len);
    unsigned char *q = p + KV_HDR_HEAD + s->layout_len;
    put64(q, (uint64_t)e->n_tokens);
    put64(q + 8, e->bytes);
    put64(q + 16, e->created);
    put32(q + 24, flags);
    put32(q + 28, 0);
    put64(q + 32, 0);
    put64(q + 40, bsum);
    if (version != KV_VERSION_UNSALTED) {
        if (e->salt.salted)
            memcpy(q + KV_SALT_AT, e->salt.hash, KVSTORE_SALT_LEN);
        else
            memset(q + KV_SALT_AT, 0, KVSTORE_SALT_LEN);
    }
    size_t size = (size_t)hdr_size(s, version);
    uint64_t hsum = kvstore_checksum(e->tokens, (size_t)e->n_tokens * 4,
                                     kvstore_checksum(p, size, 0));
    put64(q + 32, hsum);
    return size;
}

/* A fresh id, unique among the indexed entries: splitmix64 over a counter
 * seeded randomly at open, so ids never repeat within a run. */
static void new_id(kvstore_t *s, struct entry *e)
{
    for (;;) {
        uint64_t z = (s->id_state += 0x9E3779B97F4A7C15ull);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        snprintf(e->name, sizeof e->name, "%016" PRIx64, z);
        bool clash = false;
        for (struct entry *o = s->all; o && !clash; o = o->next)
            clash = strcmp(o->name, e->name) == 0;
        if (!clash)
            return;
    }
}

/* The name of the shared file of an entry of `salt` over tokens[0..n):
 * XXH3-128 of the tokens, seeded with the XXH3-64 of the fingerprint, the
 * layout and the namespace; 32 hex digits. The same everywhere for the
 * same entry, and recomputed from a file's content when it is indexed. */
static void sh_name_of(const kvstore_t *s, const kvstore_salt_t *salt, const int32_t *tokens,
                       int n, char out[KV_SH_ID_LEN + 1])
{
    unsigned char head[8 + 4 + KV_MAX_LAYOUT + 1 + KVSTORE_SALT_LEN];
    size_t at = 0;
    put64(head, s->fingerprint);
    put32(head + 8, s->layout_len);
    at = 12;
    memcpy(head + at, s->layout, s->layout_len);
    at += s->layout_len;
    head[at++] = salt->salted ? 1 : 0;
    if (salt->salted)
        memcpy(head + at, salt->hash, KVSTORE_SALT_LEN);
    else
        memset(head + at, 0, KVSTORE_SALT_LEN);
    at += KVSTORE_SALT_LEN;
    XXH128_hash_t h = XXH3_128bits_withSeed(tokens, (size_t)n * 4, kvstore_checksum(head, at, 0));
    snprintf(out, KV_SH_ID_LEN + 1, "%016" PRIx64 "%016" PRIx64, (uint64_t)h.high64,
             (uint64_t)h.low64);
}

static void sh_file_name(char *out, const char *name)
{
    snprintf(out, KV_SH_NAME_MAX, "%s%s", name, KV_SH_SUFFIX);
}

static bool is_hex(const char *p, int n)
{
    for (int i = 0; i < n; i++)
        if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
            return false;
    return true;
}

/* ------------------------------------------------------------------ */
/* namespaces (under the mutex; see NAMESPACES)                         */

bool kvstore_salt_equal(const kvstore_salt_t *a, const kvstore_salt_t *b)
{
    bool sa = a && a->salted, sb = b && b->salted;
    if (sa != sb)
        return false;
    return !sa || memcmp(a->hash, b->hash, KVSTORE_SALT_LEN) == 0;
}

static void salt_key(const kvstore_salt_t *salt, int32_t key[KV_SALT_WORDS])
{
    memcpy(key, salt->hash, KVSTORE_SALT_LEN);
}

/* The tree of the namespace `salt` (NULL or not salted: s->index). A salt
 * without entries has none: NULL, unless `create`, which makes an empty
 * one (NULL then only when out of memory). */
static radix_t *ns_index(kvstore_t *s, const kvstore_salt_t *salt, bool create)
{
    if (!salt || !salt->salted)
        return s->index;
    int32_t key[KV_SALT_WORDS];
    salt_key(salt, key);
    void *v = NULL;
    if (radix_find_exact(s->salted, key, KV_SALT_WORDS, &v) == RADIX_OK)
        return v;
    radix_t *t = NULL;
    if (!create || radix_new(&t) != RADIX_OK)
        return NULL;
    if (radix_insert(s->salted, key, KV_SALT_WORDS, t, NULL) != RADIX_OK) {
        radix_free(t, NULL);
        return NULL;
    }
    return t;
}

/* Free the tree t of the namespace `salt` once it holds no entry (the
 * tree of no salt stays). */
static void ns_prune(kvstore_t *s, const kvstore_salt_t *salt, radix_t *t)
{
    if (!salt->salted || radix_size(t) > 0)
        return;
    int32_t key[KV_SALT_WORDS];
    salt_key(salt, key);
    radix_remove(s->salted, key, KV_SALT_WORDS, NULL);
    radix_free(t, NULL);
}

static void ns_free_index(void *t) { radix_free(t, NULL); }

/* ------------------------------------------------------------------ */
/* lists (all under the mutex)                                         */

static void all_push(kvstore_t *s, struct entry *e)
{
    e->prev = NULL;
    e->next = s->all;
    if (s->all)
        s->all->prev = e;
    s->all = e;
    s->n_entries++;
}

static void all_unlink(kvstore_t *s, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        s->all = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
    s->n_entries--;
}

static void ram_unlink(kvstore_t *s, struct entry *e)
{
    if (e->ram_prev)
        e->ram_prev->ram_next = e->ram_next;
    else
        s->ram_head = e->ram_next;
    if (e->ram_next)
        e->ram_next->ram_prev = e->ram_prev;
    else
        s->ram_tail = e->ram_prev;
    e->ram_prev = e->ram_next = NULL;
}

static void ram_push_front(kvstore_t *s, struct entry *e)
{
    e->ram_prev = NULL;
    e->ram_next = s->ram_head;
    if (s->ram_head)
        s->ram_head->ram_prev = e;
    else
        s->ram_tail = e;
    s->ram_head = e;
}

static void disk_unlink(kvstore_t *s, struct entry *e)
{
    if (e->disk_prev)
        e->disk_prev->disk_next = e->disk_next;
    else
        s->disk_head = e->disk_next;
    if (e->disk_next)
        e->disk_next->disk_prev = e->disk_prev;
    else
        s->disk_tail = e->disk_prev;
    e->disk_prev = e->disk_next = NULL;
}

static void disk_push_front(kvstore_t *s, struct entry *e)
{
    e->disk_prev = NULL;
    e->disk_next = s->disk_head;
    if (s->disk_head)
        s->disk_head->disk_prev = e;
    else
        s->disk_tail = e;
    s->disk_head = e;
}

static void disk_push_back(kvstore_t *s, struct entry *e)
{
    e->disk_next = NULL;
    e->disk_prev = s->disk_tail;
    if (s->disk_tail)
        s->disk_tail->disk_next = e;
    else
        s->disk_head = e;
    s->disk_tail = e;
}

static void sh_push(kvstore_t *s, struct entry *e)
{
    e->sh_prev = NULL;
    e->sh_next = s->sh_head;
    if (s->sh_head)
        s->sh_head->sh_prev = e;
    s->sh_head = e;
}

static void sh_unlink(kvstore_t *s, struct entry *e)
{
    if (e->sh_prev)
        e->sh_prev->sh_next = e->sh_next;
    else
        s->sh_head = e->sh_next;
    if (e->sh_next)
        e->sh_next->sh_prev = e->sh_prev;
    e->sh_prev = e->sh_next = NULL;
}

/* A shared file found or written for e (not shared yet): note it. */
static void sh_attach(kvstore_t *s, struct entry *e, const char *name, uint64_t hdr_bytes,
                      uint64_t file_bytes, uint64_t bsum, uint64_t ino)
{
    memcpy(e->sh_name, name, sizeof e->sh_name);
    e->sh_hdr_bytes = hdr_bytes;
    e->sh_file_bytes = file_bytes;
    e->sh_bsum = bsum;
    e->sh_ino = ino;
    e->sh_touched = now_ms();
    e->shared = true;
    sh_push(s, e);
}

/* ------------------------------------------------------------------ */
/* reference counting and freeing                                      */

/* A blob over `mem` (malloc'd, cap bytes, len used), one reference; NULL
 * when out of memory (mem is then still the caller's). */
static struct blob *blob_new(void *mem, size_t cap, size_t len)
{
    struct blob *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->refs = 1;
    b->mem = b->data = mem;
    b->cap = cap;
    b->len = len;
    return b;
}

static void blob_free_now(struct blob *b)
{
    if (!b)
        return;
    if (b->mapped)
        munmap(b->mem, b->cap);
    else
        free(b->mem);
    free(b);
}

/* Free what was collected, then call the waiters collected (each once,
 * with the lock released; they may call into the store). */
static void reap_run(struct reap *r)
{
    while (r->blobs) {
        struct blob *b = r->blobs;
        r->blobs = b->free_next;
        blob_free_now(b);
    }
    while (r->entries) {
        struct entry *e = r->entries;
        r->entries = e->free_next;
        free(e->tokens);
        free(e);
    }
    while (r->waiters) {
        struct waiter *w = r->waiters;
        r->waiters = w->next;
        w->fn(w->ud, r->waiters_rc);
        free(w);
    }
}

/* Drop a reference to b. The last one frees it, but a large allocated
 * buffer is kept instead as the store's spare (the one before goes), for
 * the next read from disk: see LOADS FROM DISK. */
static void blob_unref(kvstore_t *s, struct blob *b, struct reap *r)
{
    if (!b || --b->refs > 0)
        return;
    if (!b->mapped && b->cap >= KV_SPARE_MIN && !s->stop) {
        struct blob *old = s->spare;
        s->spare = b;
        if (!old)
            return;
        b = old;
    }
    b->free_next = r->blobs;
    r->blobs = b;
}

/* Take the spare for a blob of len bytes that will be kept in RAM, when it
 * is large enough and not over an eighth larger (the RAM tier counts
 * len). Returns it with one reference and len set, or NULL. */
static struct blob *spare_take(kvstore_t *s, size_t len)
{
    struct blob *b = s->spare;
    if (!b || b->cap < len || b->cap - len > len / 8)
        return NULL;
    s->spare = NULL;
    b->refs = 1;
    b->len = len;
    b->data = b->mem;
    return b;
}

static void entry_free_now(struct entry *e)
{
    free(e->tokens);
    free(e);
}

static void queue_job(kvstore_t *s, struct entry *e, unsigned kind)
{
    if (kind == JOB_WRITE && !(e->jobs & JOB_WRITE))
        s->n_pending_writes++;
    if (e->jobs) {
        e->jobs |= kind;
        return;
    }
    if (kind != JOB_UNLINK)
        e->refs++;   /* the queue's reference; dead entries have none */
    e->jobs = kind;
    e->job_next = NULL;
    if (s->q_tail)
        s->q_tail->job_next = e;
    else
        s->q_head = e;
    s->q_tail = e;
    pthread_cond_signal(&s->work);
}

/* Drop one reference; the last one frees the entry, after its file is
 * deleted by the writer when it still has one. */
static void entry_unref(kvstore_t *s, struct entry *e, struct reap *r)
{
    if (--e->refs > 0)
        return;
    if (e->has_file && s->writer_started && !s->stop) {
        queue_job(s, e, JOB_UNLINK);
        return;
    }
    e->free_next = r->entries;
    r->entries = e;
}

/* Take e out of the index: its RAM copy goes now, its file when the last
 * reference goes. A pending write finds it gone and discards its work.
 * `in_radix`: whether the radix tree still maps its tokens to it. */
static void entry_unindex(kvstore_t *s, struct entry *e, struct reap *r, bool in_radix)
{
    radix_t *t = in_radix ? ns_index(s, &e->salt, false) : NULL;
    if (t) {
        radix_remove(t, e->tokens, (size_t)e->n_tokens, NULL);
        ns_prune(s, &e->salt, t);
    }
    all_unlink(s, e);
    if (e->ram) {
        ram_unlink(s, e);
        s->ram_bytes -= e->bytes;
        blob_unref(s, e->ram, r);
        e->ram = NULL;
    }
    if (e->on_disk) {
        disk_unlink(s, e);
        s->disk_bytes -= e->file_bytes;
        e->on_disk = false;
    }
    if (e->shared) {
        sh_unlink(s, e);   /* the file stays: it is every engine's */
        e->shared = false;
    }
    e->in_index = false;
    entry_unref(s, e, r);
}

/* e's shared file is gone or unusable: e forgets it, and leaves the index
 * when it had no other copy. */
static void sh_forget(kvstore_t *s, struct entry *e, struct reap *r)
{
    if (!e->shared)
        return;
    sh_unlink(s, e);
    e->shared = false;
    if (e->in_index && !e->ram && !e->pending && !e->on_disk)
        entry_unindex(s, e, r, true);
}

/* ------------------------------------------------------------------ */
/* tiers                                                               */

static kvstore_tier_t entry_tier(const struct entry *e)
{
    if (!e->in_index)
        return KVSTORE_TIER_NONE;
    if (e->ram || e->pending)
        return KVSTORE_TIER_RAM;
    return e->on_disk || !e->shared ? KVSTORE_TIER_DISK : KVSTORE_TIER_SHARED;
}

static void ram_add(kvstore_t *s, struct entry *e, struct blob *b)
{
    b->refs++;
    e->ram = b;
    ram_push_front(s, e);
    s->ram_bytes += e->bytes;
}

/* Evict e's RAM copy: free it when the file exists or a write is queued,
 * demote to disk when there is a disk tier, else drop the entry. */
static void ram_evict(kvstore_t *s, struct entry *e, struct reap *r)
{
    struct blob *b = e->ram;
    ram_unlink(s, e);
    s->ram_bytes -= e->bytes;
    e->ram = NULL;
    s->st.evictions_ram++;
    if (e->on_disk || e->pending || e->shared) {
        blob_unref(s, b, r);
        return;
    }
    if (s->disk_tier && e->file_bytes <= s->disk_budget) {
        e->pending = b;   /* the RAM slot's reference moves to the writer */
        queue_job(s, e, JOB_WRITE);
        return;
    }
    blob_unref(s, b, r);
    s->st.dropped++;
    entry_unindex(s, e, r, true);
}

/* Evict least recently used unpinned RAM copies until within budget. */
static void ram_enforce(kvstore_t *s, struct reap *r)
{
    struct entry *e = s->ram_tail;
    while (s->ram_bytes > s->ram_budget && e) {
        struct entry *prev = e->ram_prev;
        if (!e->pinned)
            ram_evict(s, e, r);
        e = prev;
    }
}

/* Count a use of h's entry once: hit counters, last use, LRU order. */
static void entry_use(kvstore_t *s, kvstore_handle_t *h, kvstore_tier_t tier)
{
    if (h->used)
        return;
    h->used = true;
    struct entry *e = h->e;
    e->hits++;
    e->last_used = now_ms();
    if (tier == KVSTORE_TIER_RAM)
        s->st.hits_ram++;
    else if (tier == KVSTORE_TIER_DISK)
        s->st.hits_disk++;
    else if (tier == KVSTORE_TIER_SHARED)
        s->st.hits_shared++;
    else
        s->st.touches++;
    if (!e->in_index)
        return;
    if (e->shared && s->writer_started && !s->stop) {
        /* The shared eviction order is by access time: tell the other
         * engines this file is in use, now and then (by the writer). */
        uint64_t every = s->sh_grace_ms / 2;
        every = every < 1000 ? 1000 : every > 60000 ? 60000 : every;
        if (e->last_used >= e->sh_touched + every) {
            e->sh_touched = e->last_used;
            queue_job(s, e, JOB_SH_TOUCH);
        }
    }
    if (e->ram) {
        ram_unlink(s, e);
        ram_push_front(s, e);
    }
    if (e->on_disk) {
        disk_unlink(s, e);
        disk_push_front(s, e);
    }
}

/* ------------------------------------------------------------------ */
/* file I/O (never under the mutex)                                     */

static int write_all(int fd, const void *p, size_t n)
{
    const unsigned char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write e's file atomically from blob b, with the given KV_FLAG_* flags.
 * Returns 0 (and *bsum) or -errno; on failure no file of that name is
 * left behind. */
static int write_entry_file(kvstore_t *s, const struct entry *e, const struct blob *b,
                            uint32_t flags, uint64_t *bsum)
{
    char tmp[KV_NAME_MAX], fin[KV_NAME_MAX];
    file_name(tmp, e->name, true);
    file_name(fin, e->name, false);
    unsigned char hdr[KV_HDR_MAX];
    uint64_t sum = kvstore_checksum(b->data, b->len, 0);
    size_t hl = hdr_encode(s, hdr, e, e->file_version, flags, sum);

    int fd = openat(s->dir_fd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, hdr, hl);
    if (!rc)
        rc = write_all(fd, e->tokens, (size_t)e->n_tokens * 4);
    if (!rc)
        rc = write_all(fd, b->data, b->len);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    if (!rc && renameat(s->dir_fd, tmp, s->dir_fd, fin) != 0)
        rc = -errno;
    if (rc) {
        unlinkat(s->dir_fd, tmp, 0);
        return rc;
    }
    /* Make the new name durable. EINVAL: the filesystem cannot sync a
     * directory; nothing more can be done there. */
    if (fsync(s->dir_fd) != 0 && errno != EINVAL) {
        rc = -errno;
        unlinkat(s->dir_fd, fin, 0);
        return rc;
    }
    *bsum = sum;
    return 0;
}

/* What write_shared_file() wrote. */
struct sh_written {
    char name[KV_SH_ID_LEN + 1];
    uint64_t hdr_bytes, file_bytes, bsum, ino;
};

/* Write e's shared file from blob b (checksum bsum) with the given flags,
 * once: to a temporary name of our own, fsync'd, then moved to its name
 * only if no file has it (RENAME_NOREPLACE, or link() where the
 * filesystem lacks that), and the directory fsync'd. Returns 0 (written,
 * *out filled), 1 when the name is present already (nothing written) or
 * -errno (no file of ours left behind, but see the directory fsync). */
static int write_shared_file(kvstore_t *s, const struct entry *e, const struct blob *b,
                             uint32_t flags, uint64_t bsum, struct sh_written *out)
{
    char fin[KV_SH_NAME_MAX], tmp[KV_SH_NAME_MAX];
    sh_name_of(s, &e->salt, e->tokens, e->n_tokens, out->name);
    sh_file_name(fin, out->name);
    struct stat st;
    if (fstatat(s->sh_fd, fin, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    uint64_t nonce;
    if (getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != sizeof nonce)
        nonce = now_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)e;
    snprintf(tmp, sizeof tmp, "%.32s" KV_SH_SUFFIX ".%016" PRIx64 ".tmp", out->name, nonce);
    unsigned char hdr[KV_HDR_MAX];
    size_t hl = hdr_encode(s, hdr, e, KV_VERSION, flags, bsum);

    int fd = openat(s->sh_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    int rc = write_all(fd, hdr, hl);
    if (!rc)
        rc = write_all(fd, e->tokens, (size_t)e->n_tokens * 4);
    if (!rc)
        rc = write_all(fd, b->data, b->len);
    if (!rc && fsync(fd) != 0)
        rc = -errno;
    if (!rc && fstat(fd, &st) != 0)
        rc = -errno;
    if (close(fd) != 0 && !rc)
        rc = -errno;
    bool present = false, moved = false;
    if (!rc) {
        if (renameat2(s->sh_fd, tmp, s->sh_fd, fin, RENAME_NOREPLACE) == 0) {
            moved = true;
        } else if (errno == EEXIST) {
            present = true;
        } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
            /* No RENAME_NOREPLACE here (NFS): link() fails if the name
             * exists, atomically on every POSIX filesystem. */
            if (linkat(s->sh_fd, tmp, s->sh_fd, fin, 0) != 0) {
                if (errno == EEXIST)
                    present = true;
                else
                    rc = -errno;
            }
        } else {
            rc = -errno;
        }
    }
    if (!moved)
        unlinkat(s->sh_fd, tmp, 0);
    if (rc)
        return rc;
    if (present)
        return 1;
    /* The file is complete and may be in use by others already: it stays
     * even when its name cannot be made durable. */
    if (fsync(s->sh_fd) != 0 && errno != EINVAL)
        return -errno;
    out->hdr_bytes = hl;
    out->file_bytes = hl + (uint64_t)e->n_tokens * 4 + b->len;
    out->bsum = bsum;
    out->ino = (uint64_t)st.st_ino;
    return 0;
}

static void unlink_entry_file(kvstore_t *s, const char *id)
{
    char fin[KV_NAME_MAX];
    file_name(fin, id, false);
    if (unlinkat(s->dir_fd, fin, 0) != 0 && errno != ENOENT)
        log_warn("kvstore: cannot delete %s/%s: %s", s->dir, fin, strerror(errno));
}

/* Where a load reads an entry's blob from: its local file or its shared
 * one, described under the mutex, read without it. */
struct src {
    int dfd;
    char name[KV_SH_NAME_MAX];
    uint64_t file_bytes;
    off_t off;                /* of the blob */
    size_t bytes;
    uint64_t bsum;
    uint64_t ino;             /* shared: the file indexed */
    bool shared;              /* read, never mapped; a vanished file is a miss */
};

static void src_of(const kvstore_t *s, const struct entry *e, bool shared, struct src *f)
{
    memset(f, 0, sizeof *f);
    f->shared = shared;
    f->bytes = e->bytes;
    if (shared) {
        f->dfd = s->sh_fd;
        sh_file_name(f->name, e->sh_name);
        f->file_bytes = e->sh_file_bytes;
        f->off = (off_t)(e->sh_hdr_bytes + (uint64_t)e->n_tokens * 4);
        f->bsum = e->sh_bsum;
        f->ino = e->sh_ino;
    } else {
        f->dfd = s->dir_fd;
        file_name(f->name, e->name, false);
        f->file_bytes = e->file_bytes;
        f->off = (off_t)(e->hdr_bytes + (uint64_t)e->n_tokens * 4);
        f->bsum = e->bsum;
    }
}

/* Read the blob of f from fd into b->data in blocks, each hashed while it
 * is in the cache. Returns 0 or a KVSTORE_E* code with *why set. */
static int read_hashed(int fd, const struct src *f, struct blob *b, const char **why)
{
    const off_t off = f->off;
    XXH3_state_t *h = XXH3_createState();
    if (!h) {
        *why = "out of memory";
        return KVSTORE_ENOMEM;
    }
    XXH3_64bits_reset_withSeed(h, 0);
    posix_fadvise(fd, off, (off_t)f->bytes, POSIX_FADV_SEQUENTIAL);
    unsigned char *buf = b->data;
    int rc = KVSTORE_OK;
    size_t done = 0;
    while (done < f->bytes) {
        size_t want = f->bytes - done < KV_READ_CHUNK ? f->bytes - done : KV_READ_CHUNK;
        ssize_t got = pread(fd, buf + done, want, off + (off_t)done);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            *why = strerror(errno);
            rc = KVSTORE_EIO;
            break;
        }
        if (got == 0) {
            *why = "file truncated";
            rc = KVSTORE_ECORRUPT;
            break;
        }
        XXH3_64bits_update(h, buf + done, (size_t)got);
        done += (size_t)got;
    }
    if (!rc && XXH3_64bits_digest(h) != f->bsum) {
        *why = "blob checksum mismatch";
        rc = KVSTORE_ECORRUPT;
    }
    XXH3_freeState(h);
    return rc;
}

/* Map fd (size bytes) and populate it from the page cache (reading from
 * disk what is not there). Returns 0 with *map, 1 when this kernel cannot
 * populate a mapping with error reports (the caller reads instead), or a
 * KVSTORE_E* code with *why set. */
static int map_populated(int fd, size_t size, void **map, const char **why)
{
#ifdef MADV_POPULATE_READ
    void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        return 1;
    if (madvise(m, size, MADV_POPULATE_READ) != 0) {
        int err = errno;
        munmap(m, size);
        if (err == EINVAL)
            return 1;   /* before Linux 5.14 */
        if (err == ENOMEM) {
            *why = "out of memory";
            return KVSTORE_ENOMEM;
        }
        *why = err == EFAULT ? "read error (or file truncated) while mapping" : strerror(err);
        return KVSTORE_EIO;
    }
    *map = m;
    return 0;
#else
    (void)fd;
    (void)size;
    (void)map;
    (void)why;
    return 1;
#endif
}

/* Read and verify the blob of f: mapped from the page cache where the
 * kernel can (MADV_POPULATE_READ) and f is local, else read into a
 * buffer: the spare one when the blob will be kept in RAM (`keep`) and
 * the spare suits it, else a fresh one. A shared file that is gone (or
 * was replaced) gives KVSTORE_ENOTFOUND. Returns 0 with *out (a blob with
 * one reference) or a KVSTORE_E* code with *why set. Called without the
 * mutex. */
static int read_entry_blob(kvstore_t *s, const struct src *f, bool keep, struct blob **out,
                           const char **why)
{
    struct blob *b = NULL;
    int rc = KVSTORE_OK;
    int fd = openat(f->dfd, f->name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        rc = f->shared && (errno == ENOENT || errno == ESTALE) ? KVSTORE_ENOTFOUND : KVSTORE_EIO;
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = strerror(errno);
        rc = f->shared && errno == ESTALE ? KVSTORE_ENOTFOUND : KVSTORE_EIO;
        goto out;
    }
    if (f->shared && (uint64_t)st.st_ino != f->ino) {
        *why = "replaced by another file";
        rc = KVSTORE_ENOTFOUND;
        goto out;
    }
    if ((uint64_t)st.st_size != f->file_bytes) {
        *why = "file size changed";
        rc = KVSTORE_ECORRUPT;
        goto out;
    }
    const off_t off = f->off;
    void *m = NULL;
    rc = f->shared ? 1 : map_populated(fd, (size_t)f->file_bytes, &m, why);
    if (rc < 0)
        goto out;
    if (rc == 0) {
        if (!(b = blob_new(m, (size_t)f->file_bytes, f->bytes))) {
            munmap(m, (size_t)f->file_bytes);
            *why = "out of memory";
            rc = KVSTORE_ENOMEM;
            goto out;
        }
        b->mapped = true;
        b->data = (unsigned char *)m + off;
        if (kvstore_checksum(b->data, b->len, 0) != f->bsum) {
            *why = "blob checksum mismatch";
            rc = KVSTORE_ECORRUPT;
        }
        goto out;
    }
    rc = KVSTORE_OK;   /* no mapping here: read it */
    if (keep) {
        pthread_mutex_lock(&s->lock);
        b = spare_take(s, f->bytes);
        pthread_mutex_unlock(&s->lock);
    }
    if (!b) {
        void *buf = hugemem_alloc(f->bytes);
        if (!buf || !(b = blob_new(buf, f->bytes, f->bytes))) {
            free(buf);
            *why = "out of memory";
            rc = KVSTORE_ENOMEM;
            goto out;
        }
    }
    rc = read_hashed(fd, f, b, why);
out:
    if (fd >= 0)
        close(fd);
    if (rc) {
        blob_free_now(b);
        return rc;
    }
    *out = b;
    return KVSTORE_OK;
}

/* ------------------------------------------------------------------ */
/* writer thread                                                        */

/* Delete the file of a disk-tier entry to make room (writer thread, mutex
 * held on entry and exit, released around the unlink). */
static void disk_evict(kvstore_t *s, struct entry *v, struct reap *r)
{
    char id[KVSTORE_ID_LEN + 1];
    memcpy(id, v->name, sizeof id);
    disk_unlink(s, v);
    s->disk_bytes -= v->file_bytes;
    v->on_disk = false;
    v->has_file = false;   /* deleted right here */
    s->st.evictions_disk++;
    if (!v->ram && !v->pending && !v->shared) {
        s->st.dropped++;
        entry_unindex(s, v, r, true);
    }
    pthread_mutex_unlock(&s->lock);
    unlink_entry_file(s, id);
    pthread_mutex_lock(&s->lock);
}

/* Least recently used file that may be deleted now. */
static struct entry *disk_victim(kvstore_t *s)
{
    for (struct entry *e = s->disk_tail; e; e = e->disk_prev)
        if (!e->pinned && e->loading == 0)
            return e;
    return NULL;
}

/* Hand e's waiters to r, to be told rc once the mutex is released. */
static void waiters_take(struct entry *e, struct reap *r, int rc)
{
    struct waiter **tail = &r->waiters;
    while (*tail)
        tail = &(*tail)->next;
    *tail = e->waiters;
    e->waiters = NULL;
    r->waiters_rc = rc;
}

/* Write e's pending blob to its file. Mutex held on entry and exit. Its
 * waiters go to r with the outcome. Returns true when the flags changed
 * meanwhile (header rewrite). */
static bool do_write(kvstore_t *s, struct entry *e, struct reap *r)
{
    struct blob *b = e->pending;
    if (!e->in_index || !b) {
        e->pending = NULL;
        blob_unref(s, b, r);
        s->n_pending_writes--;
        waiters_take(e, r, KVSTORE_ENOTFOUND);
        return false;
    }
    uint64_t need = e->file_bytes;
    while (s->disk_bytes + need > s->disk_budget) {
        struct entry *v = disk_victim(s);
        if (!v)
            break;
        disk_evict(s, v, r);
    }
    enum { WRITTEN, GONE, NO_ROOM, FAILED } outcome;
    int err = 0;
    uint32_t flags = entry_flags(e);
    bool wrote = false;
    uint64_t bsum = 0;
    if (!e->in_index) {
        outcome = GONE;   /* deleted while we made room */
    } else if (s->disk_bytes + need > s->disk_budget) {
        outcome = NO_ROOM;   /* pinned files fill the budget: not an I/O error */
    } else {
        s->disk_bytes += need;   /* reserved while writing */
        /* The shared file follows the local one (SHARED TIER), by this
         * thread: pins stay local. */
        bool to_shared = s->shared_tier && !e->shared && need <= s->sh_budget;
        pthread_mutex_unlock(&s->lock);
        err = write_entry_file(s, e, b, flags, &bsum);
        struct sh_written shw;
        int sh_rc = to_shared && !err
                        ? write_shared_file(s, e, b, flags & ~KV_FLAG_PINNED, bsum, &shw) : 1;
        if (sh_rc < 0 && !s->sh_write_failing)
            log_warn("kvstore: cannot write entry %s to the shared tier %s: %s (logged once "
                     "until a write succeeds)", e->name, s->sh_dir, strerror(-sh_rc));
        else if (sh_rc == 0 && s->sh_write_failing)
            log_info("kvstore: writes to the shared tier %s succeed again", s->sh_dir);
        if (to_shared && !err && sh_rc != 1)
            s->sh_write_failing = sh_rc < 0;   /* the writer's own */
        pthread_mutex_lock(&s->lock);
        if (to_shared && !err) {
            if (sh_rc == 0) {
                s->st.shared_writes++;
                if (e->in_index && !e->shared)
                    sh_attach(s, e, shw.name, shw.hdr_bytes, shw.file_bytes, shw.bsum, shw.ino);
            } else if (sh_rc == 1) {
                s->st.shared_write_skips++;
            } else {
                s->st.shared_write_failures++;
            }
        }
        s->disk_bytes -= need;
        wrote = err == 0;
        outcome = err ? FAILED : e->in_index ? WRITTEN : GONE;
    }
    e->pending = NULL;
    s->n_pending_writes--;
    blob_unref(s, b, r);
    waiters_take(e, r, outcome == WRITTEN ? KVSTORE_OK : outcome == GONE ? KVSTORE_ENOTFOUND
                       : outcome == NO_ROOM ? KVSTORE_ENOSPACE : KVSTORE_EIO);
    bool drop = false;
    switch (outcome) {
    case WRITTEN:
        e->on_disk = true;
        e->has_file = true;
        e->bsum = bsum;
        e->file_flags = flags;
        s->disk_bytes += need;
        disk_push_front(s, e);
        s->st.disk_writes++;
        return entry_flags(e) != flags;
    case GONE:
        if (wrote) {
            /* Deleted while being written: the file must not outlive it. */
            pthread_mutex_unlock(&s->lock);
            unlink_entry_file(s, e->name);
            pthread_mutex_lock(&s->lock);
        }
        return false;
    case NO_ROOM:
    case FAILED:
        if (outcome == FAILED)
            s->st.disk_write_failures++;
        drop = e->in_index && !e->ram && !e->shared;
        if (drop) {
            s->st.dropped++;
            entry_unindex(s, e, r, true);
        }
        break;
    }
    pthread_mutex_unlock(&s->lock);
    if (outcome == FAILED)
        log_warn("kvstore: cannot write entry %s (%zu bytes) to %s: %s; %s", e->name, e->bytes,
                 s->dir, strerror(-err), drop ? "entry dropped" : "keeping it in RAM only");
    else
        log_info("kvstore: no room for entry %s: pinned entries fill the disk budget; %s",
                 e->name, drop ? "entry dropped" : "keeping it in RAM only");
    pthread_mutex_lock(&s->lock);
    return false;
}

/* Rewrite the header of e's file with its current flags. */
static void do_header(kvstore_t *s, struct entry *e)
{
    if (!e->in_index || !e->on_disk || entry_flags(e) == e->file_flags)
        return;
    uint32_t flags = entry_flags(e);
    uint64_t bsum = e->bsum;
    pthread_mutex_unlock(&s->lock);
    unsigned char hdr[KV_HDR_MAX];
    size_t hl = hdr_encode(s, hdr, e, e->file_version, flags, bsum);
    char fin[KV_NAME_MAX];
    file_name(fin, e->name, false);
    int err = 0;
    int fd = openat(s->dir_fd, fin, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        err = errno;
    } else {
        if (pwrite(fd, hdr, hl, 0) != (ssize_t)hl || fdatasync(fd) != 0)
            err = errno ? errno : EIO;
        close(fd);
    }
    if (err)
        log_warn("kvstore: cannot update the header of %s: %s", fin, strerror(err));
    pthread_mutex_lock(&s->lock);
    if (!err)
        e->file_flags = flags;
}

/* Copy e's loaded mapping into a RAM copy (spare buffer or fresh), when
 * it still belongs there. Mutex held on entry and exit; released around
 * the allocation and the copy. */
static void do_promote(kvstore_t *s, struct entry *e, struct reap *r)
{
    struct blob *src = e->promote;
    e->promote = NULL;
    if (!src)
        return;
    struct blob *nb = NULL;
    if (e->in_index && !e->ram && !e->disk_only && e->bytes <= s->ram_budget) {
        nb = spare_take(s, e->bytes);
        pthread_mutex_unlock(&s->lock);
        if (!nb) {
            void *buf = hugemem_alloc(e->bytes);
            if (buf && !(nb = blob_new(buf, e->bytes, e->bytes)))
                free(buf);
        }
        if (nb)
            memcpy(nb->data, src->data, e->bytes);
        pthread_mutex_lock(&s->lock);
    }
    /* Deleted, promoted by another way or out of memory meanwhile: drop it. */
    if (nb && e->in_index && !e->ram && !e->disk_only && e->bytes <= s->ram_budget) {
        ram_add(s, e, nb);
        ram_enforce(s, r);
    }
    blob_unref(s, nb, r);
    blob_unref(s, src, r);
}

/* Set the access time of e's shared file to now (its modification time
 * and content stay): the shared eviction order is by it. A vanished file
 * is left to the next rescan. */
static void do_sh_touch(kvstore_t *s, struct entry *e)
{
    if (!e->in_index || !e->shared)
        return;
    char fin[KV_SH_NAME_MAX];
    sh_file_name(fin, e->sh_name);
    pthread_mutex_unlock(&s->lock);
    const struct timespec ts[2] = { { .tv_nsec = UTIME_NOW }, { .tv_nsec = UTIME_OMIT } };
    if (utimensat(s->sh_fd, fin, ts, AT_SYMLINK_NOFOLLOW) != 0 && errno != ENOENT)
        log_debug("kvstore: cannot set the access time of %s/%s: %s", s->sh_dir, fin,
                  strerror(errno));
    pthread_mutex_lock(&s->lock);
}

static void *writer_main(void *arg)
{
    kvstore_t *s = arg;
    /* Persisting is never urgent (the RAM tier serves meanwhile): the
     * checksum and copy work runs only on cores that decoding leaves idle,
     * so it cannot slow down a prompt or a restore. */
    struct sched_param sp = { .sched_priority = 0 };
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) != 0)
        log_debug("kvstore: writer thread keeps normal priority");
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->q_head && !s->stop)
            pthread_cond_wait(&s->work, &s->lock);
        if (!s->q_head)
            break;
        struct entry *e = s->q_head;
        s->q_head = e->job_next;
        if (!s->q_head)
            s->q_tail = NULL;
        unsigned jobs = e->jobs;
        e->jobs = 0;
        s->writer_busy = true;
        struct reap r = { 0 };
        if (jobs & JOB_UNLINK) {
            /* A dead entry: delete its file, then free it. */
            pthread_mutex_unlock(&s->lock);
            unlink_entry_file(s, e->name);
            pthread_mutex_lock(&s->lock);
            e->free_next = r.entries;
            r.entries = e;
        } else {
            if ((jobs & JOB_WRITE) && do_write(s, e, &r))
                jobs |= JOB_HEADER;
            if (jobs & JOB_HEADER)
                do_header(s, e);
            if (jobs & JOB_PROMOTE)
                do_promote(s, e, &r);
            if (jobs & JOB_SH_TOUCH)
                do_sh_touch(s, e);
            entry_unref(s, e, &r);
        }
        s->writer_busy = false;
        if (!s->q_head)
            pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->lock);
        reap_run(&r);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* open: directory scan                                                 */

/* What scan_file() learnt besides the entry. */
struct scan_out {
    bool vanished;            /* the name was gone when opened */
    bool foreign;             /* a valid header of another model or layout */
    uint64_t size, ino;
};

/* Read and check the header and tokens of the entry file `name` in the
 * directory dfd. Returns the entry (not indexed) or NULL with the reason
 * in why. NULL with why[0] == '\0' means out of memory (the file is
 * kept). *so tells the file's size and inode, and why it was refused. */
static struct entry *scan_file(kvstore_t *s, int dfd, const char *name, char *why, size_t whylen,
                               struct scan_out *so)
{
    why[0] = '\0';
    memset(so, 0, sizeof *so);
    struct entry *e = NULL;
    unsigned char hdr[KV_HDR_MAX];
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        so->vanished = errno == ENOENT || errno == ESTALE;
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        goto fail;
    }
    so->size = (uint64_t)st.st_size;
    so->ino = (uint64_t)st.st_ino;
    ssize_t got = pread(fd, hdr, sizeof hdr, 0);
    if (got < (ssize_t)KV_HDR_HEAD) {
        snprintf(why, whylen, "truncated header");
        goto fail;
    }
    if (memcmp(hdr, KV_MAGIC, 8) != 0) {
        snprintf(why, whylen, "bad magic");
        goto fail;
    }
    uint32_t version = get32(hdr + 8);
    if (version != KV_VERSION && version != KV_VERSION_UNSALTED) {
        snprintf(why, whylen, "unknown format version %" PRIu32, version);
        goto fail;
    }
    uint64_t fp = get64(hdr + 12);
    if (fp != s->fingerprint) {
        snprintf(why, whylen, "made by another model (fingerprint %016" PRIx64 ")", fp);
        so->foreign = true;
        goto fail;
    }
    uint32_t L = get32(hdr + 20);
    if (L > KV_MAX_LAYOUT) {
        snprintf(why, whylen, "corrupt header (layout length %" PRIu32 ")", L);
        goto fail;
    }
    uint64_t hl = KV_HDR_HEAD + L +
                  (version == KV_VERSION_UNSALTED ? KV_HDR_TAIL_V2 : KV_HDR_TAIL);
    if (got < (ssize_t)hl) {
        snprintf(why, whylen, "truncated header");
        goto fail;
    }
    if (L != s->layout_len || memcmp(hdr + KV_HDR_HEAD, s->layout, L) != 0) {
        snprintf(why, whylen, "made for another context layout \"%.*s\"", (int)L,
                 (const char *)hdr + KV_HDR_HEAD);
        so->foreign = true;
        goto fail;
    }
    const unsigned char *q = hdr + KV_HDR_HEAD + L;
    uint64_t n = get64(q), bytes = get64(q + 8), created = get64(q + 16);
    uint32_t flags = get32(q + 24);
    uint64_t hsum = get64(q + 32), bsum = get64(q + 40);
    uint32_t known = version == KV_VERSION_UNSALTED ? KV_FLAGS_V2 : KV_FLAGS_KNOWN;
    if (n == 0 || n > KV_MAX_TOKENS || bytes == 0 || bytes > ((uint64_t)1 << 48) ||
        (flags & ~known) != 0 || get32(q + 28) != 0) {
        snprintf(why, whylen, "corrupt header (counts, flags or reserved)");
        goto fail;
    }
    kvstore_salt_t salt = { .salted = (flags & KV_FLAG_SALTED) != 0 };
    if (version != KV_VERSION_UNSALTED) {
        static const unsigned char zero[KVSTORE_SALT_LEN];
        memcpy(salt.hash, q + KV_SALT_AT, KVSTORE_SALT_LEN);
        if (!salt.salted && memcmp(salt.hash, zero, KVSTORE_SALT_LEN) != 0) {
            snprintf(why, whylen, "corrupt header (a salt hash without the salted flag)");
            goto fail;
        }
    }
    uint64_t want = hl + n * 4 + bytes;
    if ((uint64_t)st.st_size != want) {
        snprintf(why, whylen, "size %lld bytes, header says %" PRIu64 " (truncated?)",
                 (long long)st.st_size, want);
        goto fail;
    }
    e = calloc(1, sizeof *e);
    if (!e || !(e->tokens = malloc(n * 4)))
        goto nomem;
    if (pread(fd, e->tokens, n * 4, (off_t)hl) != (ssize_t)(n * 4)) {
        snprintf(why, whylen, "cannot read tokens");
        goto fail;
    }
    unsigned char zeroed[KV_HDR_MAX];
    memcpy(zeroed, hdr, hl);
    put64(zeroed + KV_HDR_HEAD + L + 32, 0);
    if (kvstore_checksum(e->tokens, n * 4, kvstore_checksum(zeroed, hl, 0)) != hsum) {
        snprintf(why, whylen, "header checksum mismatch");
        goto fail;
    }
    close(fd);
    memcpy(e->name, name, KVSTORE_ID_LEN);
    e->name[KVSTORE_ID_LEN] = '\0';
    e->n_tokens = (int)n;
    e->bytes = (size_t)bytes;
    e->hdr_bytes = hl;
    e->file_bytes = want;
    e->bsum = bsum;
    e->created = created;
    e->last_used = (uint64_t)st.st_mtim.tv_sec * 1000u + (uint64_t)st.st_mtim.tv_nsec / 1000000u;
    e->pinned = (flags & KV_FLAG_PINNED) != 0;
    e->disk_only = (flags & KV_FLAG_DISK) != 0;
    e->file_flags = flags;
    e->file_version = version;
    e->salt = salt;
    e->on_disk = e->has_file = true;
    return e;
nomem:
    why[0] = '\0';
fail:
    if (e)
        entry_free_now(e);
    close(fd);
    return NULL;
}

static int cmp_recent_first(const void *a, const void *b)
{
    const struct entry *x = *(struct entry *const *)a, *y = *(struct entry *const *)b;
    return x->last_used < y->last_used ? 1 : x->last_used > y->last_used ? -1 : 0;
}

/* Index the directory (resume) or empty it (reset). Only files named
 * "<16 hex>.kv" and "<16 hex>.kv.tmp" are ours; others are left alone. */
static int scan_dir(kvstore_t *s)
{
    int dfd = dup(s->dir_fd);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        log_error("kvstore: cannot list %s: %s", s->dir, strerror(errno));
        return KVSTORE_EIO;
    }
    struct entry **found = NULL;
    size_t n_found = 0, cap = 0, n_tmp = 0, n_bad = 0, n_reset = 0;
    int rc = KVSTORE_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (strlen(name) < KVSTORE_ID_LEN)
            continue;
        if (name_matches(name, ".kv.tmp")) {
            if (unlinkat(s->dir_fd, name, 0) == 0)
                n_tmp++;
            continue;
        }
        if (!name_matches(name, ".kv"))
            continue;
        if (s->mode == KVSTORE_RESET) {
            if (unlinkat(s->dir_fd, name, 0) == 0)
                n_reset++;
            continue;
        }
        char why[160];
        struct scan_out so;
        struct entry *e = scan_file(s, s->dir_fd, name, why, sizeof why, &so);
        if (!e) {
            if (!why[0]) {
                rc = KVSTORE_ENOMEM;
                break;
            }
            log_warn("kvstore: skipping %s/%s: %s; removed", s->dir, name, why);
            unlinkat(s->dir_fd, name, 0);
            n_bad++;
            continue;
        }
        if (n_found == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct entry **nf = realloc(found, ncap * sizeof *nf);
            if (!nf) {
                entry_free_now(e);
                rc = KVSTORE_ENOMEM;
                break;
            }
            found = nf;
            cap = ncap;
        }
        found[n_found++] = e;
    }
    closedir(d);
    if (rc) {
        for (size_t i = 0; i < n_found; i++)
            entry_free_now(found[i]);
        free(found);
        return rc;
    }
    if (n_tmp)
        log_info("kvstore: removed %zu unfinished temporary file(s) from %s", n_tmp, s->dir);
    if (n_reset)
        log_info("kvstore: reset: removed %zu entry file(s) from %s", n_reset, s->dir);

    /* Most recent first, so the disk LRU list is built in order and a
     * duplicate token sequence keeps its most recent file. */
    if (n_found > 1)
        qsort(found, n_found, sizeof *found, cmp_recent_first);
    struct reap r = { 0 };
    for (size_t i = 0; i < n_found; i++) {
        struct entry *e = found[i];
        radix_t *t = ns_index(s, &e->salt, true);
        void *dup_v = NULL;
        if (t && radix_find_exact(t, e->tokens, (size_t)e->n_tokens, &dup_v) == RADIX_OK) {
            log_info("kvstore: %s duplicates %s; removed", e->name,
                     ((struct entry *)dup_v)->name);
            unlink_entry_file(s, e->name);
            entry_free_now(e);
            continue;
        }
        if (!t || radix_insert(t, e->tokens, (size_t)e->n_tokens, e, NULL) != RADIX_OK) {
            if (t)
                ns_prune(s, &e->salt, t);
            entry_free_now(e);   /* out of memory: file kept for next time */
            continue;
        }
        e->refs = 1;
        e->in_index = true;
        all_push(s, e);
        disk_push_back(s, e);
        s->disk_bytes += e->file_bytes;
    }
    free(found);
    size_t n_over = 0;
    while (s->disk_bytes > s->disk_budget) {
        struct entry *v = disk_victim(s);
        if (!v)
            break;
        char id[KVSTORE_ID_LEN + 1];
        memcpy(id, v->name, sizeof id);
        v->has_file = false;
        entry_unindex(s, v, &r, true);
        unlink_entry_file(s, id);
        n_over++;
    }
    reap_run(&r);
    if (n_over)
        log_info("kvstore: removed %zu entry file(s) beyond the disk budget", n_over);
    if (s->mode == KVSTORE_RESUME)
        log_info("kvstore: resumed %zu entries (%.1f MiB) from %s%s", s->n_entries,
                 (double)s->disk_bytes / 1048576.0, s->dir,
                 n_bad ? " (some files skipped)" : "");
    return KVSTORE_OK;
}

/* ------------------------------------------------------------------ */
/* shared tier: rescan and eviction (SHARED TIER in kvstore.h)          */

static int cmp_shfile(const void *a, const void *b)
{
    return strcmp(((const struct shfile *)a)->name, ((const struct shfile *)b)->name);
}

static int cmp_shfile_when(const void *a, const void *b)
{
    const struct shfile *x = *(struct shfile *const *)a, *y = *(struct shfile *const *)b;
    if (x->when != y->when)
        return x->when < y->when ? -1 : 1;
    return strcmp(x->name, y->name);
}

static uint64_t ts_ms(const struct timespec *t)
{
    return (uint64_t)t->tv_sec * 1000u + (uint64_t)t->tv_nsec / 1000000u;
}

/* Entries whose shared file is named in gone[0..n) (sorted by name) forget
 * it. Under the mutex. */
static void sh_forget_names(kvstore_t *s, const struct shfile *gone, size_t n, struct reap *r)
{
    if (n == 0)
        return;
    struct entry *e = s->sh_head;
    while (e) {
        struct entry *next = e->sh_next;
        struct shfile key;
        memcpy(key.name, e->sh_name, sizeof key.name);
        if (bsearch(&key, gone, n, sizeof *gone, cmp_shfile))
            sh_forget(s, e, r);
        e = next;
    }
}

/* Is name one of ours: "<32 hex>.kvs" (tmp false) or the temporary
 * "<32 hex>.kvs.<16 hex>.tmp" (tmp true)? */
static bool sh_name_matches(const char *name, bool tmp)
{
    size_t l = strlen(name), sl = strlen(KV_SH_SUFFIX);
    if (!tmp)
        return l == KV_SH_ID_LEN + sl && is_hex(name, KV_SH_ID_LEN) &&
               strcmp(name + KV_SH_ID_LEN, KV_SH_SUFFIX) == 0;
    return l == KV_SH_ID_LEN + sl + 1 + 16 + 4 && is_hex(name, KV_SH_ID_LEN) &&
           memcmp(name + KV_SH_ID_LEN, KV_SH_SUFFIX ".", sl + 1) == 0 &&
           is_hex(name + KV_SH_ID_LEN + sl + 1, 16) && strcmp(name + l - 4, ".tmp") == 0;
}

/* The names of the shared directory, sorted, in *out (malloc'd; kind
 * SH_VALID, bytes 0). Temporary files older than KV_SH_TMP_AGE_MS (their
 * writer died) are removed on the way. Returns 0 or a KVSTORE_E* code. */
static int sh_list(kvstore_t *s, struct shfile **out, size_t *n_out)
{
    int dfd = openat(s->sh_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return KVSTORE_EIO;
    }
    struct shfile *cur = NULL;
    size_t n = 0, cap = 0;
    uint64_t now = now_ms();
    int rc = KVSTORE_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *name = de->d_name;
        if (sh_name_matches(name, true)) {
            struct stat st;
            if (fstatat(s->sh_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                ts_ms(&st.st_mtim) + KV_SH_TMP_AGE_MS < now &&
                unlinkat(s->sh_fd, name, 0) == 0)
                log_info("kvstore: removed the abandoned temporary file %s/%s", s->sh_dir, name);
            continue;
        }
        if (!sh_name_matches(name, false))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct shfile *nc = realloc(cur, ncap * sizeof *nc);
            if (!nc) {
                rc = KVSTORE_ENOMEM;
                break;
            }
            cur = nc;
            cap = ncap;
        }
        memset(&cur[n], 0, sizeof cur[n]);
        memcpy(cur[n].name, name, KV_SH_ID_LEN);
        n++;
    }
    closedir(d);
    if (rc) {
        free(cur);
        return rc;
    }
    if (n > 1)
        qsort(cur, n, sizeof *cur, cmp_shfile);
    *out = cur;
    *n_out = n;
    return KVSTORE_OK;
}

/* Read a new name's header and tokens: the entry (not indexed, its shared
 * fields set) or NULL with f->kind and f->bytes telling what it is, or
 * *drop set when the name must not be remembered (vanished, or out of
 * memory: tried again next time). *skipped counts refused files. */
static struct entry *sh_scan_new(kvstore_t *s, struct shfile *f, bool *drop, size_t *skipped)
{
    char fin[KV_SH_NAME_MAX], why[160];
    sh_file_name(fin, f->name);
    struct scan_out so;
    *drop = false;
    struct entry *e = scan_file(s, s->sh_fd, fin, why, sizeof why, &so);
    if (e) {
        char want[KV_SH_ID_LEN + 1];
        sh_name_of(s, &e->salt, e->tokens, e->n_tokens, want);
        if (strcmp(want, f->name) != 0) {
            snprintf(why, sizeof why, "its name does not match its content");
            entry_free_now(e);
            e = NULL;
        }
    }
    if (!e) {
        if (!why[0] || so.vanished) {
            *drop = true;
            return NULL;
        }
        f->kind = so.foreign ? SH_FOREIGN : SH_BAD;
        f->bytes = so.size;
        (*skipped)++;
        log_warn("kvstore: skipping shared file %s/%s: %s", s->sh_dir, fin, why);
        return NULL;
    }
    f->kind = SH_VALID;
    f->bytes = e->file_bytes;
    e->sh_hdr_bytes = e->hdr_bytes;
    e->sh_file_bytes = e->file_bytes;
    e->sh_bsum = e->bsum;
    e->sh_ino = so.ino;
    memcpy(e->sh_name, f->name, sizeof e->sh_name);
    e->shared = true;
    e->sh_touched = now_ms();
    /* No local file (yet): one written later is of the current format. */
    e->on_disk = e->has_file = false;
    e->pinned = false;
    e->bsum = 0;
    e->file_version = KV_VERSION;
    e->hdr_bytes = hdr_size(s, KV_VERSION);
    e->file_bytes = e->hdr_bytes + (uint64_t)e->n_tokens * 4 + e->bytes;
    e->file_flags = 0;
    return e;
}

/* Delete files beyond the budget (SHARED TIER, Eviction) from the names
 * in s->sh_known; those deleted, and those found gone, leave it and the
 * index. scan_lock held. */
static void sh_evict(kvstore_t *s)
{
    struct shfile *k = s->sh_known;
    size_t n = s->n_sh_known;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        if (k[i].kind != SH_FOREIGN)
            total += k[i].bytes;
    size_t n_gone = 0, evicted = 0;
    struct shfile **order = NULL;
    if (total > s->sh_budget && (order = malloc(n * sizeof *order)) != NULL) {
        size_t n_order = 0;
        for (size_t i = 0; i < n; i++) {
            if (k[i].kind == SH_FOREIGN)
                continue;
            char fin[KV_SH_NAME_MAX];
            sh_file_name(fin, k[i].name);
            struct stat st;
            if (fstatat(s->sh_fd, fin, &st, AT_SYMLINK_NOFOLLOW) != 0) {
                if (errno == ENOENT) {   /* deleted by another engine */
                    total -= k[i].bytes;
                    k[i].bytes = UINT64_MAX;   /* marks it gone */
                    n_gone++;
                }
                continue;
            }
            uint64_t at = ts_ms(&st.st_atim), mt = ts_ms(&st.st_mtim);
            k[i].when = at > mt ? at : mt;
            order[n_order++] = &k[i];
        }
        qsort(order, n_order, sizeof *order, cmp_shfile_when);
        uint64_t now = now_ms();
        uint64_t cutoff = now > s->sh_grace_ms ? now - s->sh_grace_ms : 0;
        for (size_t i = 0; i < n_order && total > s->sh_budget; i++) {
            struct shfile *f = order[i];
            if (f->when > cutoff)
                break;   /* this one and all after it are within the grace period */
            char fin[KV_SH_NAME_MAX];
            sh_file_name(fin, f->name);
            if (unlinkat(s->sh_fd, fin, 0) != 0 && errno != ENOENT) {
                log_warn("kvstore: cannot delete %s/%s: %s", s->sh_dir, fin, strerror(errno));
                continue;
            }
            total -= f->bytes;
            f->bytes = UINT64_MAX;
            n_gone++;
            evicted++;
        }
        free(order);
    }
    /* Take the gone names out of the known list (still sorted) and of the
     * index. */
    struct shfile *gone = n_gone ? malloc(n_gone * sizeof *gone) : NULL;
    size_t g = 0, w = 0;
    for (size_t i = 0; i < n; i++) {
        if (k[i].bytes == UINT64_MAX) {
            if (gone)
                gone[g++] = k[i];
            continue;
        }
        k[w++] = k[i];
    }
    s->n_sh_known = w;
    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    sh_forget_names(s, gone, g, &r);
    s->st.shared_evictions += evicted;
    s->st.shared_bytes = total;
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    free(gone);
    if (evicted)
        log_info("kvstore: deleted %zu shared file(s) beyond the shared budget", evicted);
}

/* One rescan (see kvstore_shared_rescan). scan_lock held. */
static int sh_rescan(kvstore_t *s)
{
    /* Names a load found gone or replaced are forgotten: if present
     * still, they are new to this rescan and read again. */
    pthread_mutex_lock(&s->lock);
    struct shfile *again = s->sh_recheck;
    size_t n_again = s->n_sh_recheck;
    s->sh_recheck = NULL;
    s->n_sh_recheck = 0;
    pthread_mutex_unlock(&s->lock);
    if (n_again) {
        size_t w = 0;
        for (size_t i = 0; i < s->n_sh_known; i++) {
            bool drop = false;
            for (size_t k = 0; k < n_again && !drop; k++)
                drop = strcmp(s->sh_known[i].name, again[k].name) == 0;
            if (!drop)
                s->sh_known[w++] = s->sh_known[i];
        }
        s->n_sh_known = w;
    }
    free(again);
    struct shfile *cur = NULL;
    size_t n_cur = 0;
    int rc = sh_list(s, &cur, &n_cur);
    if (rc) {
        free(cur);
        return rc;
    }
    const struct shfile *known = s->sh_known;
    const size_t n_known = s->n_sh_known;
    struct shfile *gone = n_known ? malloc(n_known * sizeof *gone) : NULL;
    if (n_known && !gone) {
        free(cur);
        return KVSTORE_ENOMEM;
    }
    struct entry *fresh = NULL;   /* chained by next */
    size_t n_gone = 0, skipped = 0, i = 0, j = 0, w = 0;
    while (i < n_cur || j < n_known) {
        int c = i == n_cur ? 1 : j == n_known ? -1 : strcmp(cur[i].name, known[j].name);
        if (c > 0) {
            gone[n_gone++] = known[j++];
            continue;
        }
        if (c == 0) {
            cur[w] = known[j++];
            i++;
            w++;
            continue;
        }
        struct shfile f = cur[i++];   /* new: its header and tokens */
        bool drop;
        struct entry *e = sh_scan_new(s, &f, &drop, &skipped);
        if (drop)
            continue;
        cur[w++] = f;
        if (e) {
            e->next = fresh;
            fresh = e;
        }
    }
    n_cur = w;

    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    s->st.shared_rescans++;
    s->st.shared_skipped += skipped;
    sh_forget_names(s, gone, n_gone, &r);
    while (fresh) {
        struct entry *e = fresh;
        fresh = e->next;
        e->next = NULL;
        radix_t *t = ns_index(s, &e->salt, true);
        void *dup_v = NULL;
        if (t && radix_find_exact(t, e->tokens, (size_t)e->n_tokens, &dup_v) == RADIX_OK) {
            /* Our own entry of these tokens (one we wrote, say). */
            struct entry *x = dup_v;
            if (!x->shared)
                sh_attach(s, x, e->sh_name, e->sh_hdr_bytes, e->sh_file_bytes, e->sh_bsum,
                          e->sh_ino);
            e->free_next = r.entries;
            r.entries = e;
            continue;
        }
        if (!t || radix_insert(t, e->tokens, (size_t)e->n_tokens, e, NULL) != RADIX_OK) {
            if (t)
                ns_prune(s, &e->salt, t);
            e->free_next = r.entries;   /* out of memory: a miss, no more */
            r.entries = e;
            continue;
        }
        new_id(s, e);
        e->refs = 1;
        e->in_index = true;
        all_push(s, e);
        sh_push(s, e);   /* its shared fields are set */
    }
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    free(gone);
    free(s->sh_known);
    s->sh_known = cur;
    s->n_sh_known = n_cur;
    sh_evict(s);
    return KVSTORE_OK;
}

int kvstore_shared_rescan(kvstore_t *s)
{
    if (!s || !s->shared_tier)
        return KVSTORE_EINVAL;
    pthread_mutex_lock(&s->scan_lock);
    int rc = sh_rescan(s);
    if (rc == KVSTORE_EIO && !s->sh_list_failing)
        log_warn("kvstore: cannot list the shared tier %s (logged once until it works)",
                 s->sh_dir);
    s->sh_list_failing = rc == KVSTORE_EIO;
    pthread_mutex_unlock(&s->scan_lock);
    return rc;
}

/* The rescan thread: kvstore_shared_rescan() every sh_rescan_ms. */
static void *scanner_main(void *arg)
{
    kvstore_t *s = arg;
    pthread_mutex_lock(&s->lock);
    while (!s->sh_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + (uint64_t)s->sh_rescan_ms * 1000000u;
        ts.tv_sec += (time_t)(ns / 1000000000u);
        ts.tv_nsec = (long)(ns % 1000000000u);
        while (!s->sh_stop && pthread_cond_timedwait(&s->sh_wake, &s->lock, &ts) != ETIMEDOUT)
            ;
        if (s->sh_stop)
            break;
        pthread_mutex_unlock(&s->lock);
        kvstore_shared_rescan(s);
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* open / close                                                         */

int kvstore_open(const kvstore_config_t *cfg, kvstore_t **out)
{
    if (!cfg || !out)
        return KVSTORE_EINVAL;
    const char *layout = cfg->layout ? cfg->layout : "";
    size_t layout_len = strlen(layout);
    bool disk = cfg->disk_budget > 0 && cfg->dir && cfg->dir[0];
    bool shared = cfg->shared_dir && cfg->shared_dir[0];
    if (layout_len > KV_MAX_LAYOUT || (cfg->disk_budget > 0 && !disk) ||
        (cfg->mode != KVSTORE_RESUME && cfg->mode != KVSTORE_RESET) ||
        (shared && (!disk || cfg->shared_budget == 0)))
        return KVSTORE_EINVAL;

    kvstore_t *s = calloc(1, sizeof *s);
    if (!s)
        return KVSTORE_ENOMEM;
    s->dir_fd = s->lock_fd = s->sh_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->scan_lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->sh_wake, &ca);
    pthread_condattr_destroy(&ca);
    s->shared_tier = shared;
    s->sh_budget = shared ? cfg->shared_budget : 0;
    s->sh_rescan_ms = cfg->shared_rescan_ms;
    s->sh_grace_ms = cfg->shared_grace_ms;
    s->st.shared_budget = s->sh_budget;
    s->ram_budget = cfg->ram_budget;
    s->disk_budget = disk ? cfg->disk_budget : 0;
    s->disk_tier = disk;
    s->fingerprint = cfg->fingerprint;
    s->mode = cfg->mode;
    s->layout_len = (uint32_t)layout_len;
    s->layout = strdup(layout);
    s->dir = strdup(disk ? cfg->dir : "");
    s->sh_dir = strdup(shared ? cfg->shared_dir : "");
    int rc = KVSTORE_OK;
    if (!s->layout || !s->dir || !s->sh_dir || radix_new(&s->index) != RADIX_OK ||
        radix_new(&s->salted) != RADIX_OK) {
        rc = KVSTORE_ENOMEM;
        goto fail;
    }
    if (getrandom(&s->id_state, sizeof s->id_state, GRND_NONBLOCK) != sizeof s->id_state)
        s->id_state = now_ms() ^ ((uint64_t)getpid() << 32);

    if (disk) {
        if (mkdir(s->dir, 0755) != 0 && errno != EEXIST) {
            log_error("kvstore: cannot create %s: %s", s->dir, strerror(errno));
            rc = KVSTORE_EIO;
            goto fail;
        }
        s->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->dir_fd < 0) {
            log_error("kvstore: cannot open %s: %s", s->dir, strerror(errno));
            rc = KVSTORE_EIO;
            goto fail;
        }
        s->lock_fd = openat(s->dir_fd, KV_LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (s->lock_fd < 0) {
            log_error("kvstore: cannot create %s/%s: %s", s->dir, KV_LOCK_NAME, strerror(errno));
            rc = KVSTORE_EIO;
            goto fail;
        }
        if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            log_error("kvstore: %s is in use by another process", s->dir);
            rc = errno == EWOULDBLOCK ? KVSTORE_EBUSY : KVSTORE_EIO;
            goto fail;
        }
        rc = scan_dir(s);
        if (rc)
            goto fail;
    }
    if (shared) {
        if (mkdir(s->sh_dir, 0755) != 0 && errno != EEXIST) {
            log_error("kvstore: cannot create %s: %s", s->sh_dir, strerror(errno));
            rc = KVSTORE_EIO;
            goto fail;
        }
        s->sh_fd = open(s->sh_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->sh_fd < 0) {
            log_error("kvstore: cannot open %s: %s", s->sh_dir, strerror(errno));
            rc = KVSTORE_EIO;
            goto fail;
        }
        rc = kvstore_shared_rescan(s);
        if (rc)
            goto fail;
        log_info("kvstore: shared tier %s: %zu entries (%.1f MiB of files)", s->sh_dir,
                 s->n_sh_known, (double)s->st.shared_bytes / 1048576.0);
    }
    if (disk) {
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            rc = KVSTORE_ENOMEM;
            goto fail;
        }
        s->writer_started = true;
    }
    if (shared && s->sh_rescan_ms > 0) {
        if (pthread_create(&s->scanner, NULL, scanner_main, s) != 0) {
            rc = KVSTORE_ENOMEM;
            goto fail;
        }
        s->scanner_started = true;
    }
    *out = s;
    return KVSTORE_OK;
fail:
    kvstore_close(s);
    return rc;
}

void kvstore_flush(kvstore_t *s)
{
    if (!s || !s->writer_started)
        return;
    pthread_mutex_lock(&s->lock);
    while (s->q_head || s->writer_busy)
        pthread_cond_wait(&s->idle, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

void kvstore_close(kvstore_t *s)
{
    if (!s)
        return;
    if (s->scanner_started) {
        pthread_mutex_lock(&s->lock);
        s->sh_stop = true;
        pthread_cond_signal(&s->sh_wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->scanner, NULL);
    }
    if (s->writer_started) {
        kvstore_flush(s);
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->writer, NULL);
    }
    size_t held = 0;
    while (s->all) {
        struct entry *e = s->all;
        s->all = e->next;
        if (e->refs > 1)
            held++;
        struct blob *bs[3] = { e->ram, e->pending, e->promote };
        if (bs[0] == bs[1])
            bs[1] = NULL;
        for (int i = 0; i < 3; i++)
            if (bs[i] && --bs[i]->refs == 0)
                blob_free_now(bs[i]);
        entry_free_now(e);
    }
    blob_free_now(s->spare);
    if (held)
        log_warn("kvstore: closed with %zu entry handle(s) still held", held);
    radix_free(s->index, NULL);
    radix_free(s->salted, ns_free_index);
    if (s->lock_fd >= 0)
        close(s->lock_fd);   /* releases the flock */
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    if (s->sh_fd >= 0)
        close(s->sh_fd);
    free(s->sh_known);
    free(s->sh_recheck);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->sh_wake);
    pthread_mutex_destroy(&s->scan_lock);
    pthread_mutex_destroy(&s->lock);
    free(s->layout);
    free(s->dir);
    free(s->sh_dir);
    free(s);
}

/* ------------------------------------------------------------------ */
/* insert / lookup / load                                               */

int kvstore_insert_salted(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *tokens, int n,
                          void *blob, size_t len, bool pinned, bool disk_only, char *id_out)
{
    if (!s || !tokens || n <= 0 || n > KV_MAX_TOKENS || !blob || len == 0 ||
        (disk_only && !s->disk_tier)) {
        free(blob);
        return KVSTORE_EINVAL;
    }
    uint64_t file_bytes = hdr_size(s, KV_VERSION) + (uint64_t)n * 4 + len;
    bool fits_ram = !disk_only && len <= s->ram_budget;
    bool fits_disk = s->disk_tier && file_bytes <= s->disk_budget;
    if (!fits_ram && !fits_disk) {
        free(blob);
        return KVSTORE_ETOOBIG;
    }
    struct entry *e = calloc(1, sizeof *e);
    struct blob *b = blob_new(blob, len, len);   /* ours until the end of this function */
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    if (!e || !b || !toks) {
        free(e);
        free(b);
        free(toks);
        free(blob);
        return KVSTORE_ENOMEM;
    }
    memcpy(toks, tokens, (size_t)n * sizeof *toks);
    e->disk_only = disk_only;
    e->tokens = toks;
    e->n_tokens = n;
    e->bytes = len;
    e->hdr_bytes = hdr_size(s, KV_VERSION);
    e->file_bytes = file_bytes;
    e->file_version = KV_VERSION;
    if (salt && salt->salted)
        e->salt = *salt;
    e->pinned = pinned;
    e->created = e->last_used = now_ms();

    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    new_id(s, e);
    void *old = NULL;
    radix_t *t = ns_index(s, &e->salt, true);
    if (!t || radix_insert(t, toks, (size_t)n, e, &old) != RADIX_OK) {
        if (t)
            ns_prune(s, &e->salt, t);
        pthread_mutex_unlock(&s->lock);
        free(b);
        free(blob);
        entry_free_now(e);
        return KVSTORE_ENOMEM;
    }
    e->refs = 1;
    e->in_index = true;
    all_push(s, e);
    if (old) {
        struct entry *o = old;
        e->hits = o->hits;
        e->pinned |= o->pinned;
        if (o->shared) {
            /* Same tokens and namespace: the same shared file. */
            sh_attach(s, e, o->sh_name, o->sh_hdr_bytes, o->sh_file_bytes, o->sh_bsum, o->sh_ino);
            e->sh_touched = o->sh_touched;
            sh_unlink(s, o);
            o->shared = false;
        }
        entry_unindex(s, o, &r, false);
    }
    if (fits_ram)
        ram_add(s, e, b);
    if (fits_disk) {
        b->refs++;
        e->pending = b;
        queue_job(s, e, JOB_WRITE);
    }
    blob_unref(s, b, &r);
    ram_enforce(s, &r);
    int rc = KVSTORE_OK;
    if (!e->in_index)
        rc = KVSTORE_ENOSPACE;   /* pinned copies fill RAM, no disk tier */
    else if (id_out)
        memcpy(id_out, e->name, KVSTORE_ID_LEN + 1);
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    return rc;
}

int kvstore_insert(kvstore_t *s, const int32_t *tokens, int n, void *blob, size_t len,
                   bool pinned, char *id_out)
{
    return kvstore_insert_salted(s, NULL, tokens, n, blob, len, pinned, false, id_out);
}

int kvstore_insert_disk(kvstore_t *s, const int32_t *tokens, int n, void *blob, size_t len,
                        bool pinned, char *id_out)
{
    return kvstore_insert_salted(s, NULL, tokens, n, blob, len, pinned, true, id_out);
}

int kvstore_lookup(kvstore_t *s, const int32_t *tokens, int n, kvstore_match_t *match)
{
    return kvstore_lookup_salted(s, NULL, tokens, n, match);
}

int kvstore_lookup_salted(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *tokens, int n,
                          kvstore_match_t *match)
{
    if (!match)
        return KVSTORE_EINVAL;
    memset(match, 0, sizeof *match);
    if (!s || n < 0 || (!tokens && n > 0))
        return KVSTORE_EINVAL;
    kvstore_handle_t *hf = calloc(1, sizeof *hf), *hp = calloc(1, sizeof *hp);
    if (!hf || !hp) {
        free(hf);
        free(hp);
        return KVSTORE_ENOMEM;
    }
    pthread_mutex_lock(&s->lock);
    s->st.lookups++;
    void *v = NULL;
    size_t len = 0;
    radix_t *t = ns_index(s, salt, false);   /* NULL: no entry under this salt */
    if (t && n > 0 && radix_longest_prefix(t, tokens, (size_t)n, &v, &len) == RADIX_OK) {
        struct entry *e = v;
        e->refs++;
        hf->e = e;
        match->full = hf;
        match->full_len = (int)len;
        match->full_tier = entry_tier(e);
        hf = NULL;
    }
    if (t && n > 0 && radix_longest_common(t, tokens, (size_t)n, &v, &len) == RADIX_OK &&
        (int)len > match->full_len) {
        struct entry *e = v;
        e->refs++;
        hp->e = e;
        match->partial = hp;
        match->partial_len = (int)len;
        match->partial_tier = entry_tier(e);
        hp = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    free(hf);
    free(hp);
    return KVSTORE_OK;
}

int kvstore_load(kvstore_t *s, kvstore_handle_t *h, const void **blob, size_t *len)
{
    if (!s || !h || !blob || !len)
        return KVSTORE_EINVAL;
    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    struct entry *e = h->e;
    if (h->blob) {
        *blob = h->blob->data;
        *len = h->blob->len;
        pthread_mutex_unlock(&s->lock);
        return KVSTORE_OK;
    }
    if (!e->in_index) {
        pthread_mutex_unlock(&s->lock);
        return KVSTORE_ENOTFOUND;
    }
    if (e->ram || e->pending) {
        struct blob *b = e->ram ? e->ram : e->pending;
        b->refs++;
        h->blob = b;
        if (!e->ram && !e->disk_only && e->bytes <= s->ram_budget) {
            ram_add(s, e, b);
            ram_enforce(s, &r);
        }
        entry_use(s, h, KVSTORE_TIER_RAM);
        *blob = b->data;
        *len = b->len;
        pthread_mutex_unlock(&s->lock);
        reap_run(&r);
        return KVSTORE_OK;
    }
    if (!e->on_disk && !e->shared) {
        pthread_mutex_unlock(&s->lock);
        return KVSTORE_ENOTFOUND;
    }
    const bool from_shared = !e->on_disk;   /* the local file comes first */
    struct src f;
    src_of(s, e, from_shared, &f);
    e->loading++;   /* keeps the writer from deleting the file under us */
    bool keep = !e->disk_only && e->bytes <= s->ram_budget;
    pthread_mutex_unlock(&s->lock);

    const char *why = NULL;
    struct blob *nb = NULL;
    int rc = read_entry_blob(s, &f, keep, &nb, &why);
    if (rc && rc != KVSTORE_ENOMEM && from_shared)
        log_msg(rc == KVSTORE_ENOTFOUND ? LOG_DEBUG : LOG_WARN,
                "kvstore: shared file %s/%s of entry %s %s (%s); a miss", s->sh_dir, f.name,
                e->name, rc == KVSTORE_ENOTFOUND ? "gone" : "unreadable", why);
    else if (rc && rc != KVSTORE_ENOMEM)
        log_warn("kvstore: entry %s unreadable (%s); dropped", e->name, why);

    pthread_mutex_lock(&s->lock);
    e->loading--;
    if (rc && from_shared) {
        /* Gone (another engine evicted it) or bad: this engine forgets
         * the file, unless it was replaced by a new one meanwhile. */
        if (rc == KVSTORE_ENOTFOUND)
            s->st.shared_lost++;
        else if (rc != KVSTORE_ENOMEM)
            s->st.shared_read_failures++;
        if (rc != KVSTORE_ENOMEM && e->in_index && e->shared && e->sh_ino == f.ino) {
            /* A new file of that name (written again) is read at the
             * next rescan; failing memory, once the name is gone. */
            struct shfile *nr = realloc(s->sh_recheck, (s->n_sh_recheck + 1) * sizeof *nr);
            if (nr && s->n_sh_recheck < 4096) {
                s->sh_recheck = nr;
                memset(&nr[s->n_sh_recheck], 0, sizeof *nr);
                memcpy(nr[s->n_sh_recheck++].name, e->sh_name, sizeof nr->name);
            } else if (nr) {
                s->sh_recheck = nr;
            }
            sh_forget(s, e, &r);
        }
        pthread_mutex_unlock(&s->lock);
        reap_run(&r);
        return rc;
    }
    if (rc) {
        if (rc != KVSTORE_ENOMEM) {
            s->st.disk_read_failures++;
            if (e->in_index)
                entry_unindex(s, e, &r, true);   /* file deleted when unreferenced */
        }
        pthread_mutex_unlock(&s->lock);
        reap_run(&r);
        return rc;
    }
    /* nb's one reference is the handle's */
    if (e->ram) {
        /* Another load promoted it meanwhile: share that copy. */
        blob_unref(s, nb, &r);
        nb = e->ram;
        nb->refs++;
    } else if (e->in_index && keep && nb->mapped) {
        /* The copy into RAM is the writer's, off the caller's path. */
        if (!e->promote) {
            nb->refs++;
            e->promote = nb;
            queue_job(s, e, JOB_PROMOTE);
        }
    } else if (e->in_index && keep) {
        ram_add(s, e, nb);
        ram_enforce(s, &r);
    }
    h->blob = nb;
    entry_use(s, h, from_shared ? KVSTORE_TIER_SHARED : KVSTORE_TIER_DISK);
    *blob = nb->data;
    *len = nb->len;
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    return KVSTORE_OK;
}

void kvstore_touch(kvstore_t *s, kvstore_handle_t *h)
{
    if (!s || !h)
        return;
    pthread_mutex_lock(&s->lock);
    entry_use(s, h, KVSTORE_TIER_NONE);
    pthread_mutex_unlock(&s->lock);
}

void kvstore_release(kvstore_t *s, kvstore_handle_t *h)
{
    if (!s || !h)
        return;
    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    blob_unref(s, h->blob, &r);
    entry_unref(s, h->e, &r);
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    free(h);
}

void kvstore_match_release(kvstore_t *s, kvstore_match_t *m)
{
    if (!m)
        return;
    kvstore_release(s, m->full);
    kvstore_release(s, m->partial);
    m->full = m->partial = NULL;
}

void kvstore_get_tokens(const kvstore_handle_t *h, const int32_t **tokens, int *n)
{
    *tokens = h->e->tokens;
    *n = h->e->n_tokens;
}

const int32_t *kvstore_handle_tokens(const kvstore_handle_t *h) { return h->e->tokens; }

int kvstore_handle_n_tokens(const kvstore_handle_t *h) { return h->e->n_tokens; }

/* ------------------------------------------------------------------ */
/* listing, stats, management                                           */

static void entry_info(const struct entry *e, kvstore_entry_info_t *info)
{
    memset(info, 0, sizeof *info);
    memcpy(info->id, e->name, sizeof info->id);
    info->n_tokens = e->n_tokens;
    info->bytes = e->bytes;
    info->tier = entry_tier(e);
    info->on_disk = e->on_disk;
    info->shared = e->shared;
    info->pinned = e->pinned;
    info->disk_only = e->disk_only;
    info->salt = e->salt;
    info->hits = e->hits;
    info->created = e->created;
    info->last_used = e->last_used;
}

void kvstore_handle_info(kvstore_t *s, const kvstore_handle_t *h, kvstore_entry_info_t *info)
{
    pthread_mutex_lock(&s->lock);
    entry_info(h->e, info);
    pthread_mutex_unlock(&s->lock);
}

static int cmp_info_recent(const void *a, const void *b)
{
    const kvstore_entry_info_t *x = a, *y = b;
    if (x->last_used != y->last_used)
        return x->last_used < y->last_used ? 1 : -1;
    return strcmp(x->id, y->id);
}

struct extending_visit {
    kvstore_visit_fn fn;
    void *ud;
};

static int visit_extending(const int32_t *key, size_t n, void *value, void *ud)
{
    (void)value;
    const struct extending_visit *v = ud;
    return v->fn(key, (int)n, v->ud);
}

int kvstore_foreach_extending(kvstore_t *s, const int32_t *prefix, int n, kvstore_visit_fn fn,
                              void *ud)
{
    return kvstore_foreach_extending_salted(s, NULL, prefix, n, fn, ud);
}

int kvstore_foreach_extending_salted(kvstore_t *s, const kvstore_salt_t *salt,
                                     const int32_t *prefix, int n, kvstore_visit_fn fn, void *ud)
{
    if (!s || !fn || n < 0 || (n > 0 && !prefix))
        return KVSTORE_EINVAL;
    struct extending_visit v = { fn, ud };
    pthread_mutex_lock(&s->lock);
    radix_t *t = ns_index(s, salt, false);
    int rc = t ? radix_foreach_extending(t, prefix, (size_t)n, visit_extending, &v) : 0;
    pthread_mutex_unlock(&s->lock);
    return rc == RADIX_ENOMEM ? KVSTORE_ENOMEM : rc;
}

int kvstore_list(kvstore_t *s, kvstore_entry_info_t **out, size_t *n)
{
    if (!s || !out || !n)
        return KVSTORE_EINVAL;
    pthread_mutex_lock(&s->lock);
    size_t cnt = s->n_entries;
    kvstore_entry_info_t *arr = NULL;
    if (cnt > 0) {
        arr = malloc(cnt * sizeof *arr);
        if (!arr) {
            pthread_mutex_unlock(&s->lock);
            return KVSTORE_ENOMEM;
        }
        size_t i = 0;
        for (struct entry *e = s->all; e; e = e->next)
            entry_info(e, &arr[i++]);
    }
    pthread_mutex_unlock(&s->lock);
    if (cnt > 1)
        qsort(arr, cnt, sizeof *arr, cmp_info_recent);
    *out = arr;
    *n = cnt;
    return KVSTORE_OK;
}

void kvstore_stats(kvstore_t *s, kvstore_stats_t *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->st;
    out->entries = s->n_entries;
    out->entries_ram = out->entries_disk = out->entries_shared = 0;
    out->pending_bytes = 0;
    for (struct entry *e = s->all; e; e = e->next) {
        if (e->shared)
            out->entries_shared++;
        if (e->ram || e->pending)
            out->entries_ram++;
        if (e->on_disk)
            out->entries_disk++;
        if (e->pending && !e->ram)
            out->pending_bytes += e->bytes;
    }
    out->ram_bytes = s->ram_bytes;
    out->disk_bytes = s->disk_bytes;
    out->ram_budget = s->ram_budget;
    out->disk_budget = s->disk_budget;
    out->pending_writes = s->n_pending_writes;
    out->spare_bytes = s->spare ? s->spare->cap : 0;
    pthread_mutex_unlock(&s->lock);
}

static struct entry *find_id(kvstore_t *s, const char *id)
{
    for (struct entry *e = s->all; e; e = e->next)
        if (strcmp(e->name, id) == 0)
            return e;
    return NULL;
}

int kvstore_delete(kvstore_t *s, const char *id)
{
    if (!s || !id)
        return KVSTORE_EINVAL;
    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    struct entry *e = find_id(s, id);
    if (e)
        entry_unindex(s, e, &r, true);
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    return e ? KVSTORE_OK : KVSTORE_ENOTFOUND;
}

int kvstore_reset(kvstore_t *s)
{
    if (!s)
        return KVSTORE_EINVAL;
    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    while (s->all)
        entry_unindex(s, s->all, &r, true);
    if (s->spare) {   /* nothing is cached any more: neither is its buffer */
        s->spare->free_next = r.blobs;
        r.blobs = s->spare;
        s->spare = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    kvstore_flush(s);
    return KVSTORE_OK;
}

int kvstore_set_pinned(kvstore_t *s, const char *id, bool pinned)
{
    if (!s || !id)
        return KVSTORE_EINVAL;
    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    struct entry *e = find_id(s, id);
    if (e) {
        e->pinned = pinned;
        if (e->on_disk && e->file_flags != entry_flags(e))
            queue_job(s, e, JOB_HEADER);
        if (!pinned)
            ram_enforce(s, &r);
    }
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    return e ? KVSTORE_OK : KVSTORE_ENOTFOUND;
}

int kvstore_set_disk_only(kvstore_t *s, const char *id)
{
    if (!s || !id)
        return KVSTORE_EINVAL;
    struct reap r = { 0 };
    int rc = KVSTORE_OK;
    pthread_mutex_lock(&s->lock);
    struct entry *e = find_id(s, id);
    if (!e) {
        rc = KVSTORE_ENOTFOUND;
    } else if (!s->disk_tier) {
        rc = KVSTORE_EINVAL;
    } else if (e->file_bytes > s->disk_budget) {
        rc = KVSTORE_ETOOBIG;
    } else {
        e->disk_only = true;
        if (e->ram) {
            struct blob *b = e->ram;
            ram_unlink(s, e);
            s->ram_bytes -= e->bytes;
            e->ram = NULL;
            if (!e->on_disk && !e->pending) {
                e->pending = b;   /* the RAM slot's reference moves to the writer */
                queue_job(s, e, JOB_WRITE);
            } else {
                blob_unref(s, b, &r);
            }
        }
        if (e->on_disk && e->file_flags != entry_flags(e))
            queue_job(s, e, JOB_HEADER);
    }
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    return rc;
}

int kvstore_when_written(kvstore_t *s, const char *id, kvstore_written_fn fn, void *ud)
{
    if (!s || !id || !fn)
        return KVSTORE_EINVAL;
    struct waiter *w = malloc(sizeof *w);
    if (!w)
        return KVSTORE_ENOMEM;
    w->fn = fn;
    w->ud = ud;
    int now = KVSTORE_OK;
    pthread_mutex_lock(&s->lock);
    struct entry *e = find_id(s, id);
    if (e && e->pending) {
        /* queued or being written: do_write() tells it */
        w->next = e->waiters;
        e->waiters = w;
        w = NULL;
    } else {
        now = e && e->on_disk ? KVSTORE_OK : KVSTORE_ENOTFOUND;
    }
    pthread_mutex_unlock(&s->lock);
    if (w) {
        fn(ud, now);
        free(w);
    }
    return KVSTORE_OK;
}
