/* kvstore.c — KV-cache snapshot store: radix index, RAM tier, disk tier,
 * writer thread; see kvstore.h for the contract.
 *
 * ENTRY FILE FORMAT (version 1). One file per entry, named "<id>.kv" with
 * <id> the entry's 16 lowercase hex digits, in the store directory. All
 * integers are little-endian, fixed width; no padding.
 *
 *   offset      size  field
 *   0           8     magic "KVCHATKV"
 *   8           4     format version (u32) = 1
 *   12          8     model fingerprint (u64)
 *   20          4     layout length L (u32, <= 1024)
 *   24          L     layout string (bytes, no NUL), the context's KV layout
 *   24+L        8     n_tokens (u64, 1 .. 2^24)
 *   32+L        8     blob size B (u64, >= 1)
 *   40+L        8     created (u64, epoch milliseconds)
 *   48+L        4     flags (u32): bit 0 = pinned; other bits zero
 *   52+L        4     reserved (u32) = 0
 *   56+L        8     header checksum (u64)
 *   64+L        8     blob checksum (u64)
 *   H = 72+L    4*n   tokens (i32 each)
 *   H+4n        B     blob (llama_state_seq_get_data bytes, opaque)
 *
 * The file size is exactly H + 4n + B. The header checksum is
 * kvstore_checksum(tokens, 4n, kvstore_checksum(header[0..H) with the
 * header-checksum field zeroed, H, 0)): it covers every header field and
 * the tokens, which are read and verified when a store resumes. The blob
 * checksum is kvstore_checksum(blob, B, 0), verified on every load.
 * Files are written to "<id>.kv.tmp", fsync'd, renamed to "<id>.kv", and
 * the directory is fsync'd, so a crash leaves either the whole file or a
 * temporary one (removed at the next open). The directory also holds
 * ".kvstore.lock", flock'ed while a store has it open so that two engines
 * never share (and delete each other's) files; any other file in the
 * directory is left alone. Changing the pinned flag later
 * rewrites the header in place; a torn rewrite fails the header checksum
 * and the entry is discarded at the next open, never loaded wrongly.
 *
 * CHECKSUM. Four independent 64-bit lanes each take one 8-byte word per
 * 32-byte block: lane = rotl(lane ^ (word * K1), 29) * K2. The multiply of
 * the word is off the lane's dependency chain, so the four chains overlap
 * and the loop runs at several bytes per cycle. Every step is a bijection
 * of the lane for a fixed word, so any change confined to one word always
 * changes that lane. The tail (< 32 bytes) and the total length are folded
 * into the merged lanes, then a multiply-xorshift finalizer mixes all bits.
 *
 * CONCURRENCY. One mutex guards everything below except an entry's tokens,
 * which are immutable. It is released around all file I/O and checksum
 * work. Entries and blobs are reference counted (under the mutex): the
 * index holds one reference, every handle one, a queued writer job one; a
 * blob is referenced by its entry's RAM slot, its pending-write slot, and
 * each handle that loaded it. Memory is freed after the mutex is dropped
 * (struct reap). All file mutations (writes, header rewrites, deletions)
 * are done by the writer thread in queue order, so the deletion of an
 * entry's file can never overtake a later rewrite of the same name. The
 * only file I/O outside the writer is reading blobs in kvstore_load() and
 * the directory scan in kvstore_open().
 *
 * Entry states: in the index or not (deleted / replaced / dropped); a RAM
 * copy (counted in ram_bytes, on the RAM LRU list) or not; a written file
 * (on_disk, counted in disk_bytes, on the disk LRU list) or not; a pending
 * blob held for a queued or running write. An indexed entry always has at
 * least one of: RAM copy, pending blob, file.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "engine/hugemem.h"
#include "engine/radix.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* Tokens are written from and read into memory as they are; the file
 * format is little-endian. */
#error "kvstore.c assumes a little-endian host"
#endif

#define KV_MAGIC "KVCHATKV"
#define KV_VERSION 1u
#define KV_MAX_LAYOUT 1024u
#define KV_MAX_TOKENS (1 << 24)
#define KV_HDR_HEAD 24u                 /* magic, version, fingerprint, L */
#define KV_HDR_TAIL 48u                 /* n, B, created, flags, reserved, sums */
#define KV_HDR_MAX (KV_HDR_HEAD + KV_MAX_LAYOUT + KV_HDR_TAIL)
#define KV_FLAG_PINNED 1u
#define KV_LOCK_NAME ".kvstore.lock"
#define KV_READ_CHUNK ((size_t)2 << 20)  /* read, then hash while cached */
#define KV_NAME_MAX 32                   /* "<16 hex>.kv.tmp" + NUL */

/* ------------------------------------------------------------------ */
/* checksum                                                            */

#define HK1 0xA24BAED4963EE407ull
#define HK2 0x9FB21C651E98DF25ull
#define HK3 0xD6E8FEB86659FD93ull
#define HK4 0xF1357AEA2E62A9C5ull

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

typedef struct {
    uint64_t lane[4];
    uint64_t total;       /* bytes fed through hasher_blocks() */
} hasher_t;

static void hasher_init(hasher_t *h, uint64_t seed)
{
    h->lane[0] = seed ^ HK1;
    h->lane[1] = seed + HK2;
    h->lane[2] = rotl64(seed, 17) ^ HK3;
    h->lane[3] = ~seed + HK4;
    h->total = 0;
}

/* Feed floor(n / 32) blocks of 32 bytes; returns the bytes consumed. */
static size_t hasher_blocks(hasher_t *h, const unsigned char *p, size_t n)
{
    uint64_t a = h->lane[0], b = h->lane[1], c = h->lane[2], d = h->lane[3];
    size_t done = n & ~(size_t)31;
    for (const unsigned char *end = p + done; p < end; p += 32) {
        a = rotl64(a ^ (rd64(p) * HK1), 29) * HK2;
        b = rotl64(b ^ (rd64(p + 8) * HK1), 29) * HK2;
        c = rotl64(c ^ (rd64(p + 16) * HK1), 29) * HK2;
        d = rotl64(d ^ (rd64(p + 24) * HK1), 29) * HK2;
    }
    h->lane[0] = a;
    h->lane[1] = b;
    h->lane[2] = c;
    h->lane[3] = d;
    h->total += done;
    return done;
}

/* Fold in the last n (< 32) bytes and finish. */
static uint64_t hasher_final(const hasher_t *h, const unsigned char *p, size_t n)
{
    uint64_t x = (h->total + n) * HK3;
    x = (x ^ rotl64(h->lane[0] * HK3, 27)) * HK1 + HK4;
    x = (x ^ rotl64(h->lane[1] * HK3, 31)) * HK1 + HK4;
    x = (x ^ rotl64(h->lane[2] * HK3, 33)) * HK1 + HK4;
    x = (x ^ rotl64(h->lane[3] * HK3, 37)) * HK1 + HK4;
    for (; n >= 8; n -= 8, p += 8)
        x = rotl64(x ^ (rd64(p) * HK2), 27) * HK1 + HK3;
    if (n) {
        uint64_t w = 0;
        for (size_t i = 0; i < n; i++)
            w |= (uint64_t)p[i] << (8 * i);
        x = rotl64(x ^ (w * HK3), 23) * HK2 + HK1;
    }
    x ^= x >> 31;
    x *= HK4;
    x ^= x >> 29;
    x *= HK1;
    x ^= x >> 32;
    return x;
}

uint64_t kvstore_checksum(const void *data, size_t len, uint64_t seed)
{
    hasher_t h;
    hasher_init(&h, seed);
    const unsigned char *p = data;
    size_t done = hasher_blocks(&h, p, len);
    return hasher_final(&h, p + done, len - done);
}

/* ------------------------------------------------------------------ */
/* types                                                               */

struct blob {
    struct blob *free_next;   /* reap list */
    unsigned refs;            /* under the store mutex */
    size_t len;
    void *data;               /* malloc'd */
};

enum { JOB_WRITE = 1, JOB_HEADER = 2, JOB_UNLINK = 4 };

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
    uint64_t bsum;                         /* blob checksum once written/read */
    uint64_t created, last_used, hits;
    int loading;                           /* loads reading the file now */
    bool in_index;
    bool on_disk;                          /* written file, in the disk tier */
    bool has_file;                         /* a file exists to delete at the end */
    bool pinned;
    bool disk_pinned;                      /* the flag as written in the file */
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

    radix_t *index;                        /* tokens -> struct entry * */
    struct entry *all;                     /* indexed entries */
    size_t n_entries;
    struct entry *ram_head, *ram_tail;
    struct entry *disk_head, *disk_tail;
    uint64_t ram_bytes, disk_bytes;

    struct entry *q_head, *q_tail;
    size_t n_pending_writes;
    bool writer_busy, stop, writer_started;
    pthread_t writer;

    kvstore_stats_t st;                    /* counters only */
};

/* Things to free once the mutex is released. */
struct reap {
    struct blob *blobs;
    struct entry *entries;
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

static uint64_t hdr_size(const kvstore_t *s) { return KV_HDR_HEAD + s->layout_len + KV_HDR_TAIL; }

/* Write the header of e into p (KV_HDR_MAX bytes); returns its size. */
static size_t hdr_encode(const kvstore_t *s, unsigned char *p, const struct entry *e,
                         bool pinned, uint64_t bsum)
{
    memcpy(p, KV_MAGIC, 8);
    put32(p + 8, KV_VERSION);
    put64(p + 12, s->fingerprint);
    put32(p + 20, s->layout_len);
    memcpy(p + KV_HDR_HEAD, s->layout, s->layout_len);
    unsigned char *q = p + KV_HDR_HEAD + s->layout_len;
    put64(q, (uint64_t)e->n_tokens);
    put64(q + 8, e->bytes);
    put64(q + 16, e->created);
    put32(q + 24, pinned ? KV_FLAG_PINNED : 0);
    put32(q + 28, 0);
    put64(q + 32, 0);
    put64(q + 40, bsum);
    size_t size = (size_t)hdr_size(s);
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

/* ------------------------------------------------------------------ */
/* reference counting and freeing                                      */

static void reap_run(struct reap *r)
{
    while (r->blobs) {
        struct blob *b = r->blobs;
        r->blobs = b->free_next;
        free(b->data);
        free(b);
    }
    while (r->entries) {
        struct entry *e = r->entries;
        r->entries = e->free_next;
        free(e->tokens);
        free(e);
    }
}

static void blob_unref(struct blob *b, struct reap *r)
{
    if (b && --b->refs == 0) {
        b->free_next = r->blobs;
        r->blobs = b;
    }
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
    if (in_radix) {
        void *v = NULL;
        radix_remove(s->index, e->tokens, (size_t)e->n_tokens, &v);
    }
    all_unlink(s, e);
    if (e->ram) {
        ram_unlink(s, e);
        s->ram_bytes -= e->bytes;
        blob_unref(e->ram, r);
        e->ram = NULL;
    }
    if (e->on_disk) {
        disk_unlink(s, e);
        s->disk_bytes -= e->file_bytes;
        e->on_disk = false;
    }
    e->in_index = false;
    entry_unref(s, e, r);
}

/* ------------------------------------------------------------------ */
/* tiers                                                               */

static kvstore_tier_t entry_tier(const struct entry *e)
{
    if (!e->in_index)
        return KVSTORE_TIER_NONE;
    return e->ram || e->pending ? KVSTORE_TIER_RAM : KVSTORE_TIER_DISK;
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
    if (e->on_disk || e->pending) {
        blob_unref(b, r);
        return;
    }
    if (s->disk_tier && e->file_bytes <= s->disk_budget) {
        e->pending = b;   /* the RAM slot's reference moves to the writer */
        queue_job(s, e, JOB_WRITE);
        return;
    }
    blob_unref(b, r);
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
    else
        s->st.touches++;
    if (!e->in_index)
        return;
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

/* Write e's file atomically from blob b. Returns 0 (and *bsum) or -errno;
 * on failure no file of that name is left behind. */
static int write_entry_file(kvstore_t *s, const struct entry *e, const struct blob *b,
                            bool pinned, uint64_t *bsum)
{
    char tmp[KV_NAME_MAX], fin[KV_NAME_MAX];
    file_name(tmp, e->name, true);
    file_name(fin, e->name, false);
    unsigned char hdr[KV_HDR_MAX];
    uint64_t sum = kvstore_checksum(b->data, b->len, 0);
    size_t hl = hdr_encode(s, hdr, e, pinned, sum);

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

static void unlink_entry_file(kvstore_t *s, const char *id)
{
    char fin[KV_NAME_MAX];
    file_name(fin, id, false);
    if (unlinkat(s->dir_fd, fin, 0) != 0 && errno != ENOENT)
        log_warn("kvstore: cannot delete %s/%s: %s", s->dir, fin, strerror(errno));
}

/* Read and verify e's blob. Returns 0 with *out (malloc'd, e->bytes) or a
 * KVSTORE_E* code with *why set. */
static int read_entry_blob(kvstore_t *s, const struct entry *e, void **out, const char **why)
{
    char fin[KV_NAME_MAX];
    file_name(fin, e->name, false);
    int fd = openat(s->dir_fd, fin, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = strerror(errno);
        return KVSTORE_EIO;
    }
    int rc = KVSTORE_OK;
    unsigned char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = strerror(errno);
        rc = KVSTORE_EIO;
        goto out;
    }
    if ((uint64_t)st.st_size != e->file_bytes) {
        *why = "file size changed";
        rc = KVSTORE_ECORRUPT;
        goto out;
    }
    buf = hugemem_alloc(e->bytes);
    if (!buf) {
        *why = "out of memory";
        rc = KVSTORE_ENOMEM;
        goto out;
    }
    off_t off = (off_t)(e->hdr_bytes + (uint64_t)e->n_tokens * 4);
    posix_fadvise(fd, off, (off_t)e->bytes, POSIX_FADV_SEQUENTIAL);
    hasher_t h;
    hasher_init(&h, 0);
    size_t done = 0, hashed = 0;
    while (done < e->bytes) {
        size_t want = e->bytes - done < KV_READ_CHUNK ? e->bytes - done : KV_READ_CHUNK;
        ssize_t got = pread(fd, buf + done, want, off + (off_t)done);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            *why = strerror(errno);
            rc = KVSTORE_EIO;
            goto out;
        }
        if (got == 0) {
            *why = "file truncated";
            rc = KVSTORE_ECORRUPT;
            goto out;
        }
        done += (size_t)got;
        /* Hash what was just read while it is still in cache. */
        hashed += hasher_blocks(&h, buf + hashed, done - hashed);
    }
    if (hasher_final(&h, buf + hashed, done - hashed) != e->bsum) {
        *why = "blob checksum mismatch";
        rc = KVSTORE_ECORRUPT;
    }
out:
    close(fd);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
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
    if (!v->ram && !v->pending) {
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

/* Write e's pending blob to its file. Mutex held on entry and exit.
 * Returns true when the pinned flag changed meanwhile (header rewrite). */
static bool do_write(kvstore_t *s, struct entry *e, struct reap *r)
{
    struct blob *b = e->pending;
    if (!e->in_index || !b) {
        e->pending = NULL;
        blob_unref(b, r);
        s->n_pending_writes--;
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
    bool pinned = e->pinned, wrote = false;
    uint64_t bsum = 0;
    if (!e->in_index) {
        outcome = GONE;   /* deleted while we made room */
    } else if (s->disk_bytes + need > s->disk_budget) {
        outcome = NO_ROOM;   /* pinned files fill the budget: not an I/O error */
    } else {
        s->disk_bytes += need;   /* reserved while writing */
        pthread_mutex_unlock(&s->lock);
        err = write_entry_file(s, e, b, pinned, &bsum);
        pthread_mutex_lock(&s->lock);
        s->disk_bytes -= need;
        wrote = err == 0;
        outcome = err ? FAILED : e->in_index ? WRITTEN : GONE;
    }
    e->pending = NULL;
    s->n_pending_writes--;
    blob_unref(b, r);
    bool header = false, drop = false;
    switch (outcome) {
    case WRITTEN:
        e->on_disk = true;
        e->has_file = true;
        e->bsum = bsum;
        e->disk_pinned = pinned;
        s->disk_bytes += need;
        disk_push_front(s, e);
        s->st.disk_writes++;
        header = e->pinned != pinned;
        return header;
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
        drop = e->in_index && !e->ram;
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

/* Rewrite the header of e's file with its current pinned flag. */
static void do_header(kvstore_t *s, struct entry *e)
{
    if (!e->in_index || !e->on_disk || e->pinned == e->disk_pinned)
        return;
    bool pinned = e->pinned;
    uint64_t bsum = e->bsum;
    pthread_mutex_unlock(&s->lock);
    unsigned char hdr[KV_HDR_MAX];
    size_t hl = hdr_encode(s, hdr, e, pinned, bsum);
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
        e->disk_pinned = pinned;
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

/* Read and check the header and tokens of one entry file. Returns the
 * entry (not indexed) or NULL with the reason in why. NULL with why[0] ==
 * '\0' means out of memory (the file is kept). */
static struct entry *scan_file(kvstore_t *s, const char *name, char *why, size_t whylen)
{
    why[0] = '\0';
    struct entry *e = NULL;
    unsigned char hdr[KV_HDR_MAX];
    int fd = openat(s->dir_fd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, whylen, "not a regular file");
        goto fail;
    }
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
    if (version != KV_VERSION) {
        snprintf(why, whylen, "unknown format version %" PRIu32, version);
        goto fail;
    }
    uint64_t fp = get64(hdr + 12);
    if (fp != s->fingerprint) {
        snprintf(why, whylen, "made by another model (fingerprint %016" PRIx64 ")", fp);
        goto fail;
    }
    uint32_t L = get32(hdr + 20);
    if (L > KV_MAX_LAYOUT) {
        snprintf(why, whylen, "corrupt header (layout length %" PRIu32 ")", L);
        goto fail;
    }
    if (got < (ssize_t)(KV_HDR_HEAD + L + KV_HDR_TAIL)) {
        snprintf(why, whylen, "truncated header");
        goto fail;
    }
    if (L != s->layout_len || memcmp(hdr + KV_HDR_HEAD, s->layout, L) != 0) {
        snprintf(why, whylen, "made for another context layout \"%.*s\"", (int)L,
                 (const char *)hdr + KV_HDR_HEAD);
        goto fail;
    }
    const unsigned char *q = hdr + KV_HDR_HEAD + L;
    uint64_t n = get64(q), bytes = get64(q + 8), created = get64(q + 16);
    uint32_t flags = get32(q + 24);
    uint64_t hsum = get64(q + 32), bsum = get64(q + 40);
    uint64_t hl = KV_HDR_HEAD + L + KV_HDR_TAIL;
    if (n == 0 || n > KV_MAX_TOKENS || bytes == 0 || bytes > ((uint64_t)1 << 48) ||
        (flags & ~KV_FLAG_PINNED) != 0 || get32(q + 28) != 0) {
        snprintf(why, whylen, "corrupt header (counts, flags or reserved)");
        goto fail;
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
    e->pinned = e->disk_pinned = (flags & KV_FLAG_PINNED) != 0;
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
        struct entry *e = scan_file(s, name, why, sizeof why);
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
        void *dup_v = NULL;
        if (radix_find_exact(s->index, e->tokens, (size_t)e->n_tokens, &dup_v) == RADIX_OK) {
            log_info("kvstore: %s duplicates %s; removed", e->name,
                     ((struct entry *)dup_v)->name);
            unlink_entry_file(s, e->name);
            entry_free_now(e);
            continue;
        }
        if (radix_insert(s->index, e->tokens, (size_t)e->n_tokens, e, NULL) != RADIX_OK) {
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
/* open / close                                                         */

int kvstore_open(const kvstore_config_t *cfg, kvstore_t **out)
{
    if (!cfg || !out)
        return KVSTORE_EINVAL;
    const char *layout = cfg->layout ? cfg->layout : "";
    size_t layout_len = strlen(layout);
    bool disk = cfg->disk_budget > 0 && cfg->dir && cfg->dir[0];
    if (layout_len > KV_MAX_LAYOUT || (cfg->disk_budget > 0 && !disk) ||
        (cfg->mode != KVSTORE_RESUME && cfg->mode != KVSTORE_RESET))
        return KVSTORE_EINVAL;

    kvstore_t *s = calloc(1, sizeof *s);
    if (!s)
        return KVSTORE_ENOMEM;
    s->dir_fd = s->lock_fd = -1;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->ram_budget = cfg->ram_budget;
    s->disk_budget = disk ? cfg->disk_budget : 0;
    s->disk_tier = disk;
    s->fingerprint = cfg->fingerprint;
    s->mode = cfg->mode;
    s->layout_len = (uint32_t)layout_len;
    s->layout = strdup(layout);
    s->dir = strdup(disk ? cfg->dir : "");
    int rc = KVSTORE_OK;
    if (!s->layout || !s->dir || radix_new(&s->index) != RADIX_OK) {
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
        if (pthread_create(&s->writer, NULL, writer_main, s) != 0) {
            rc = KVSTORE_ENOMEM;
            goto fail;
        }
        s->writer_started = true;
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
        struct blob *bs[2] = { e->ram, e->pending };
        if (bs[0] == bs[1])
            bs[1] = NULL;
        for (int i = 0; i < 2; i++) {
            if (bs[i] && --bs[i]->refs == 0) {
                free(bs[i]->data);
                free(bs[i]);
            }
        }
        entry_free_now(e);
    }
    if (held)
        log_warn("kvstore: closed with %zu entry handle(s) still held", held);
    radix_free(s->index, NULL);
    if (s->lock_fd >= 0)
        close(s->lock_fd);   /* releases the flock */
    if (s->dir_fd >= 0)
        close(s->dir_fd);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->lock);
    free(s->layout);
    free(s->dir);
    free(s);
}

/* ------------------------------------------------------------------ */
/* insert / lookup / load                                               */

int kvstore_insert(kvstore_t *s, const int32_t *tokens, int n, void *blob, size_t len,
                   bool pinned, char *id_out)
{
    if (!s || !tokens || n <= 0 || n > KV_MAX_TOKENS || !blob || len == 0) {
        free(blob);
        return KVSTORE_EINVAL;
    }
    uint64_t file_bytes = hdr_size(s) + (uint64_t)n * 4 + len;
    bool fits_ram = len <= s->ram_budget;
    bool fits_disk = s->disk_tier && file_bytes <= s->disk_budget;
    if (!fits_ram && !fits_disk) {
        free(blob);
        return KVSTORE_ETOOBIG;
    }
    struct entry *e = calloc(1, sizeof *e);
    struct blob *b = calloc(1, sizeof *b);
    int32_t *toks = malloc((size_t)n * sizeof *toks);
    if (!e || !b || !toks) {
        free(e);
        free(b);
        free(toks);
        free(blob);
        return KVSTORE_ENOMEM;
    }
    memcpy(toks, tokens, (size_t)n * sizeof *toks);
    b->data = blob;
    b->len = len;
    b->refs = 1;   /* ours until the end of this function */
    e->tokens = toks;
    e->n_tokens = n;
    e->bytes = len;
    e->hdr_bytes = hdr_size(s);
    e->file_bytes = file_bytes;
    e->pinned = pinned;
    e->created = e->last_used = now_ms();

    struct reap r = { 0 };
    pthread_mutex_lock(&s->lock);
    new_id(s, e);
    void *old = NULL;
    if (radix_insert(s->index, toks, (size_t)n, e, &old) != RADIX_OK) {
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
        entry_unindex(s, o, &r, false);
    }
    if (fits_ram)
        ram_add(s, e, b);
    if (fits_disk) {
        b->refs++;
        e->pending = b;
        queue_job(s, e, JOB_WRITE);
    }
    blob_unref(b, &r);
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

int kvstore_lookup(kvstore_t *s, const int32_t *tokens, int n, kvstore_match_t *match)
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
    if (n > 0 && radix_longest_prefix(s->index, tokens, (size_t)n, &v, &len) == RADIX_OK) {
        struct entry *e = v;
        e->refs++;
        hf->e = e;
        match->full = hf;
        match->full_len = (int)len;
        match->full_tier = entry_tier(e);
        hf = NULL;
    }
    if (n > 0 && radix_longest_common(s->index, tokens, (size_t)n, &v, &len) == RADIX_OK &&
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
        if (!e->ram && e->bytes <= s->ram_budget) {
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
    if (!e->on_disk) {
        pthread_mutex_unlock(&s->lock);
        return KVSTORE_ENOTFOUND;
    }
    e->loading++;   /* keeps the writer from deleting the file under us */
    pthread_mutex_unlock(&s->lock);

    void *data = NULL;
    const char *why = NULL;
    int rc = read_entry_blob(s, e, &data, &why);
    struct blob *nb = NULL;
    if (!rc && !(nb = calloc(1, sizeof *nb))) {
        free(data);
        rc = KVSTORE_ENOMEM;
    }
    if (rc && rc != KVSTORE_ENOMEM)
        log_warn("kvstore: entry %s unreadable (%s); dropped", e->name, why);

    pthread_mutex_lock(&s->lock);
    e->loading--;
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
    nb->data = data;
    nb->len = e->bytes;
    nb->refs = 1;   /* the handle's */
    if (e->ram) {
        /* Another load promoted it meanwhile: share that copy. */
        blob_unref(nb, &r);
        nb = e->ram;
        nb->refs++;
    } else if (e->in_index && e->bytes <= s->ram_budget) {
        ram_add(s, e, nb);
        ram_enforce(s, &r);
    }
    h->blob = nb;
    entry_use(s, h, KVSTORE_TIER_DISK);
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
    blob_unref(h->blob, &r);
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
    info->pinned = e->pinned;
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
    if (!s || !fn || n < 0 || (n > 0 && !prefix))
        return KVSTORE_EINVAL;
    struct extending_visit v = { fn, ud };
    pthread_mutex_lock(&s->lock);
    int rc = radix_foreach_extending(s->index, prefix, (size_t)n, visit_extending, &v);
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
    out->entries_ram = out->entries_disk = 0;
    out->pending_bytes = 0;
    for (struct entry *e = s->all; e; e = e->next) {
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
        if (e->on_disk && e->disk_pinned != pinned)
            queue_job(s, e, JOB_HEADER);
        if (!pinned)
            ram_enforce(s, &r);
    }
    pthread_mutex_unlock(&s->lock);
    reap_run(&r);
    return e ? KVSTORE_OK : KVSTORE_ENOTFOUND;
}
