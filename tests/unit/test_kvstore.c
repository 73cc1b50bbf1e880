/* test_kvstore.c — the KV-cache snapshot store (kvstore.h).
 *
 * Every test works in its own directory made with mkdtemp under /tmp and
 * removed afterwards; blobs are synthetic pseudo-random bytes.
 *
 * - checksum: XXH3's published values, seeded, every single-bit flip and
 *   every length changes it; throughput over 29 MB printed (GB/s), not
 *   asserted;
 * - insert / lookup: full (wholly-prefix) and partial (longest common)
 *   matches, replacement keeps hits, argument errors, ETOOBIG, ENOSPACE;
 * - RAM LRU: the budget holds (stats), least recently used copies go first,
 *   unpinned entries are demoted to disk and load back identical;
 * - disk budget: files beyond it are deleted, the directory matches stats;
 * - pinned entries survive both budgets; the flag persists in the file;
 * - resume: entries come back in the disk tier with identical bytes;
 *   reset (open mode and kvstore_reset) removes every file; a second store
 *   on the same directory is refused;
 * - a corrupted blob byte fails the load, the entry and file are dropped;
 * - truncated, wrong-magic, unknown-version files, other fingerprint, other
 *   layout and leftover temporary files are removed at open; unrelated
 *   files are left alone; a file of format version 1 (with a right header
 *   checksum) is skipped, logged and removed;
 * - salts: salt_hash is SHA-256 (a published value) within its bounds; the
 *   same tokens under no salt and two salts are three entries, each found
 *   (whole, in part, by a walk) in its namespace only, replaced there
 *   only; a salt without entries finds nothing; the files carry the salt's
 *   hash and flag, never the salt, and come back into their namespaces
 *   after a restart; files of format version 2 (before salts) load as
 *   entries without a salt and keep their version when pinned;
 * - disk only (kvstore_insert_disk, kvstore_set_disk_only): nothing in the
 *   RAM tier, kvstore_when_written tells when the file is durable (or why
 *   not: no room, a write error, no such entry), loads are not promoted,
 *   the flag survives a restart; no disk tier or too big: refused;
 * - a disk load that is promoted into RAM (by the writer, afterwards) goes
 *   into the buffer of the last freed blob (the spare);
 * - a failing disk write (RLIMIT_FSIZE with SIGXFSZ ignored: write() gets
 *   EFBIG as on a full disk) is counted, the entry keeps serving from RAM;
 * - deleting an entry while a handle holds it is safe;
 * - 4 threads insert / look up / load / delete / pin for a second, every
 *   loaded blob verified; afterwards the books match the directory and a
 *   resumed store loads every entry intact;
 * - a 50 MB blob loaded from disk (mapped, not kept in RAM) and a 29 MB one
 *   read into the RAM tier: throughput printed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/log.h"
#include "engine/hugemem.h"
#include "engine/kvstore.h"
#include "engine/salt.h"

#define FP 0x1122334455667788ull
#define LAYOUT "k=f16 v=f16 fa=1 unified=0 seqs=4 cells=4096"

static char g_dir[64];

/* ---- helpers ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void fill(void *p, size_t n, uint64_t seed)
{
    unsigned char *c = p;
    uint64_t s = seed;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = mix(s++);
        memcpy(c + i, &v, 8);
    }
    uint64_t v = mix(s);
    for (; i < n; i++, v >>= 8)
        c[i] = (unsigned char)v;
}

static void *rand_blob(size_t n, uint64_t seed)
{
    void *p = malloc(n);
    assert_non_null(p);
    fill(p, n, seed);
    return p;
}

static void seq(int32_t *t, int n, int32_t base)
{
    for (int i = 0; i < n; i++)
        t[i] = base + i;
}

static kvstore_t *open_store(uint64_t ram, uint64_t disk, kvstore_mode_t mode, uint64_t fp,
                             const char *layout)
{
    kvstore_config_t cfg;
    kvstore_config_default(&cfg);
    cfg.ram_budget = ram;
    cfg.disk_budget = disk;
    cfg.dir = disk ? g_dir : NULL;
    cfg.fingerprint = fp;
    cfg.layout = layout;
    cfg.mode = mode;
    kvstore_t *s = NULL;
    assert_int_equal(kvstore_open(&cfg, &s), KVSTORE_OK);
    return s;
}

/* Files in g_dir whose names end with suffix; bytes summed in *bytes. */
static int count_files(const char *suffix, uint64_t *bytes)
{
    DIR *d = opendir(g_dir);
    assert_non_null(d);
    int n = 0;
    uint64_t sum = 0;
    struct dirent *de;
    size_t sl = strlen(suffix);
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l >= sl && strcmp(de->d_name + l - sl, suffix) == 0) {
            char p[400];
            snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
            struct stat st;
            assert_int_equal(stat(p, &st), 0);
            sum += (uint64_t)st.st_size;
            n++;
        }
    }
    closedir(d);
    if (bytes)
        *bytes = sum;
    return n;
}

static void entry_path(char *out, size_t cap, const char *id)
{
    snprintf(out, cap, "%s/%s.kv", g_dir, id);
}

static bool file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static int setup_dir(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/kvstore-test-XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown_dir(void **state)
{
    (void)state;
    DIR *d = opendir(g_dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char p[400];
            snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
            unlink(p);
        }
        closedir(d);
    }
    return rmdir(g_dir);
}

/* Look up exactly toks[0..n) and load it; asserts a full match. */
static void expect_load(kvstore_t *s, const int32_t *toks, int n, size_t len, uint64_t seed,
                        kvstore_tier_t want_tier)
{
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, toks, n, &m), KVSTORE_OK);
    assert_non_null(m.full);
    assert_int_equal(m.full_len, n);
    if (want_tier != KVSTORE_TIER_NONE)
        assert_int_equal(m.full_tier, want_tier);
    const void *p = NULL;
    size_t l = 0;
    assert_int_equal(kvstore_load(s, m.full, &p, &l), KVSTORE_OK);
    assert_int_equal(l, len);
    void *want = rand_blob(len, seed);
    assert_memory_equal(p, want, len);
    free(want);
    kvstore_match_release(s, &m);
    assert_null(m.full);
}

/* ---- checksum ---- */

static void test_checksum(void **state)
{
    (void)state;
    /* XXH3-64, as published by xxHash. */
    assert_true(kvstore_checksum("", 0, 0) == 0x2D06800538D394C2ull);
    assert_true(kvstore_checksum("abc", 3, 0) == 0x78AF5F94892F3950ull);
    unsigned char buf[200];
    fill(buf, sizeof buf, 7);
    uint64_t h = kvstore_checksum(buf, sizeof buf, 0);
    assert_true(h == kvstore_checksum(buf, sizeof buf, 0));
    assert_true(h != kvstore_checksum(buf, sizeof buf, 1));
    /* Every single-bit flip changes it (within blocks and in the tail). */
    for (size_t bit = 0; bit < sizeof buf * 8; bit++) {
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        assert_true(kvstore_checksum(buf, sizeof buf, 0) != h);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    /* Every length of zeros hashes differently. */
    unsigned char zero[100] = { 0 };
    uint64_t seen[101];
    for (size_t n = 0; n <= 100; n++) {
        seen[n] = kvstore_checksum(zero, n, 0);
        for (size_t k = 0; k < n; k++)
            assert_true(seen[k] != seen[n]);
    }

    /* Throughput over a snapshot's size (Qwen2.5-0.5B, 2349 tokens). */
    size_t n = 28944384;
    void *big = rand_blob(n, 42);
    uint64_t acc = 0;
    double best = 1e9;
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        acc ^= kvstore_checksum(big, n, (uint64_t)i);
        double dt = now_s() - t0;
        if (dt < best)
            best = dt;
    }
    printf("kvstore checksum: %.2f GB/s over 29 MB (best of 5; %016llx)\n",
           (double)n / best / 1e9, (unsigned long long)acc);
    free(big);
}

/* ---- RAM tier ---- */

struct lens {
    int n;
    int v[8];
};

static int collect_lens(const int32_t *tokens, int n, void *ud)
{
    (void)tokens;
    struct lens *l = ud;
    if (l->n < 8)
        l->v[l->n] = n;
    l->n++;
    return 0;
}

static void test_insert_lookup(void **state)
{
    (void)state;
    kvstore_t *s = open_store(1 << 20, 0, KVSTORE_RESUME, FP, LAYOUT);
    int32_t a[100], b[60], q[200];
    seq(a, 100, 1000);
    seq(b, 60, 1000);
    b[50] = 7;                       /* b shares 50 tokens with a */
    char ida[KVSTORE_ID_LEN + 1], idb[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, a, 100, rand_blob(5000, 1), 5000, false, ida), KVSTORE_OK);
    assert_int_equal(strlen(ida), KVSTORE_ID_LEN);
    assert_int_equal(kvstore_insert(s, b, 60, rand_blob(3000, 2), 3000, false, idb), KVSTORE_OK);
    assert_string_not_equal(ida, idb);

    /* Request = a + more: a is wholly a prefix. */
    seq(q, 200, 1000);
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, q, 200, &m), KVSTORE_OK);
    assert_non_null(m.full);
    assert_int_equal(m.full_len, 100);
    assert_int_equal(m.full_tier, KVSTORE_TIER_RAM);
    assert_null(m.partial);
    assert_int_equal(kvstore_handle_n_tokens(m.full), 100);
    assert_memory_equal(kvstore_handle_tokens(m.full), a, sizeof a);
    const int32_t *tk;
    int tn;
    kvstore_get_tokens(m.full, &tk, &tn);
    assert_int_equal(tn, 100);
    kvstore_match_release(s, &m);

    /* Request diverging from a at 80: no whole prefix; partial = a, 80. */
    seq(q, 90, 1000);
    q[80] = -5;
    assert_int_equal(kvstore_lookup(s, q, 90, &m), KVSTORE_OK);
    assert_null(m.full);
    assert_non_null(m.partial);
    assert_int_equal(m.partial_len, 80);
    assert_int_equal(kvstore_handle_n_tokens(m.partial), 100);
    kvstore_match_release(s, &m);

    /* A short entry that is a whole prefix, plus a longer partial one. */
    int32_t c[20];
    seq(c, 20, 1000);
    assert_int_equal(kvstore_insert(s, c, 20, rand_blob(100, 3), 100, false, NULL), KVSTORE_OK);

    /* The entries that continue a prefix: c, b and a share their first 20. */
    struct lens l = { 0 };
    assert_int_equal(kvstore_foreach_extending(s, c, 20, collect_lens, &l), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0], 20);   /* shorter first */
    assert_int_equal(l.v[1] + l.v[2], 160);
    l.n = 0;
    assert_int_equal(kvstore_foreach_extending(s, a, 51, collect_lens, &l), 0);
    assert_int_equal(l.n, 1);
    assert_int_equal(l.v[0], 100);
    l.n = 0;
    assert_int_equal(kvstore_foreach_extending(s, q, 90, collect_lens, &l), 0);
    assert_int_equal(l.n, 0);
    assert_int_equal(kvstore_foreach_extending(s, NULL, 3, collect_lens, &l), KVSTORE_EINVAL);
    assert_int_equal(kvstore_lookup(s, q, 90, &m), KVSTORE_OK);
    assert_non_null(m.full);
    assert_int_equal(m.full_len, 20);
    assert_non_null(m.partial);
    assert_int_equal(m.partial_len, 80);
    /* Load counts one RAM hit; touching afterwards adds nothing. */
    const void *p;
    size_t len;
    assert_int_equal(kvstore_load(s, m.partial, &p, &len), KVSTORE_OK);
    assert_int_equal(len, 5000);
    void *want = rand_blob(5000, 1);
    assert_memory_equal(p, want, 5000);
    free(want);
    const void *p2;
    assert_int_equal(kvstore_load(s, m.partial, &p2, &len), KVSTORE_OK);
    assert_ptr_equal(p, p2);     /* RAM copy, no copying */
    kvstore_touch(s, m.partial);
    kvstore_touch(s, m.full);
    kvstore_match_release(s, &m);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.hits_ram, 1);
    assert_int_equal(st.touches, 1);
    assert_int_equal(st.lookups, 3);
    assert_int_equal(st.ram_bytes, 8100);

    /* Nothing in common: a miss with OK. */
    int32_t z[3] = { 1, 2, 3 };
    assert_int_equal(kvstore_lookup(s, z, 3, &m), KVSTORE_OK);
    assert_null(m.full);
    assert_null(m.partial);

    /* Replacing the identical sequence keeps hits, gets a new id. */
    char ida2[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, a, 100, rand_blob(4000, 9), 4000, false, ida2), KVSTORE_OK);
    assert_string_not_equal(ida, ida2);
    kvstore_entry_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(s, &list, &n), KVSTORE_OK);
    assert_int_equal(n, 3);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(list[i].id, ida);
        if (strcmp(list[i].id, ida2) == 0) {
            found = true;
            assert_int_equal(list[i].hits, 1);
            assert_int_equal(list[i].bytes, 4000);
            assert_int_equal(list[i].n_tokens, 100);
            assert_string_equal(kvstore_tier_name(list[i].tier), "ram");
            assert_false(list[i].on_disk);
        }
    }
    assert_true(found);
    free(list);
    expect_load(s, a, 100, 4000, 9, KVSTORE_TIER_RAM);

    /* Errors. */
    assert_int_equal(kvstore_insert(s, a, 0, rand_blob(10, 1), 10, false, NULL), KVSTORE_EINVAL);
    assert_int_equal(kvstore_insert(s, NULL, 5, rand_blob(10, 1), 10, false, NULL), KVSTORE_EINVAL);
    assert_int_equal(kvstore_insert(s, a, 5, rand_blob(2 << 20, 1), 2 << 20, false, NULL),
                     KVSTORE_ETOOBIG);   /* > RAM budget and no disk tier */
    assert_int_equal(kvstore_delete(s, "0000000000000000"), KVSTORE_ENOTFOUND);
    assert_int_equal(kvstore_set_pinned(s, "0000000000000000", true), KVSTORE_ENOTFOUND);
    assert_int_equal(kvstore_delete(s, ida2), KVSTORE_OK);
    assert_int_equal(kvstore_delete(s, ida2), KVSTORE_ENOTFOUND);
    assert_string_equal(kvstore_strerror(KVSTORE_ETOOBIG), "snapshot larger than the cache budgets");
    kvstore_release(s, NULL);
    kvstore_touch(s, NULL);
    kvstore_close(s);
    kvstore_close(NULL);
}

static void test_ram_only_pinned_full(void **state)
{
    (void)state;
    /* No disk tier: LRU copies are dropped; pinned ones stay even over
     * budget, and an unpinned newcomer that cannot fit is refused. */
    kvstore_t *s = open_store(10000, 0, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[4][10];
    for (int i = 0; i < 4; i++)
        seq(t[i], 10, 100 * i);
    char id0[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, t[0], 10, rand_blob(4000, 0), 4000, true, id0), KVSTORE_OK);
    assert_int_equal(kvstore_insert(s, t[1], 10, rand_blob(4000, 1), 4000, false, NULL), KVSTORE_OK);
    assert_int_equal(kvstore_insert(s, t[2], 10, rand_blob(4000, 2), 4000, false, NULL), KVSTORE_OK);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 2);          /* t[1] dropped, pinned t[0] kept */
    assert_true(st.ram_bytes <= 10000);
    assert_int_equal(st.dropped, 1);
    assert_int_equal(kvstore_insert(s, t[3], 10, rand_blob(7000, 3), 7000, true, NULL), KVSTORE_OK);
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, 11000);    /* pinned entries may exceed it */
    assert_int_equal(kvstore_insert(s, t[1], 10, rand_blob(4000, 1), 4000, false, NULL),
                     KVSTORE_ENOSPACE);
    expect_load(s, t[0], 10, 4000, 0, KVSTORE_TIER_RAM);
    /* Unpinning lets the budget apply again. */
    assert_int_equal(kvstore_set_pinned(s, id0, false), KVSTORE_OK);
    kvstore_stats(s, &st);
    assert_true(st.ram_bytes <= 10000);
    kvstore_close(s);
}

static void test_ram_lru_demotes_to_disk(void **state)
{
    (void)state;
    const size_t B = 100000;
    kvstore_t *s = open_store(3 * B, 100 * B, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[6][32];
    for (int i = 0; i < 6; i++)
        seq(t[i], 32, 1000 * i);
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvstore_insert(s, t[i], 32, rand_blob(B, (uint64_t)i), B, false, NULL),
                         KVSTORE_OK);
    /* Use entry 0 so entry 1 becomes the least recently used. */
    expect_load(s, t[0], 32, B, 0, KVSTORE_TIER_RAM);
    for (int i = 3; i < 5; i++)
        assert_int_equal(kvstore_insert(s, t[i], 32, rand_blob(B, (uint64_t)i), B, false, NULL),
                         KVSTORE_OK);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_true(st.ram_bytes <= 3 * B);
    assert_int_equal(st.evictions_ram, 2);
    assert_int_equal(st.entries, 5);
    kvstore_flush(s);
    kvstore_stats(s, &st);
    assert_int_equal(st.pending_writes, 0);
    assert_int_equal(st.pending_bytes, 0);
    assert_int_equal(st.entries_disk, 5);
    assert_int_equal(st.disk_writes, 5);
    uint64_t fbytes = 0;
    assert_int_equal(count_files(".kv", &fbytes), 5);
    assert_int_equal(fbytes, st.disk_bytes);
    assert_int_equal(count_files(".tmp", NULL), 0);

    /* 1 and 2 were evicted (1 first, as least recently used); 0 stayed. */
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, t[0], 32, &m), KVSTORE_OK);
    assert_int_equal(m.full_tier, KVSTORE_TIER_RAM);
    kvstore_match_release(s, &m);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(kvstore_lookup(s, t[i], 32, &m), KVSTORE_OK);
        assert_int_equal(m.full_tier, KVSTORE_TIER_DISK);
        kvstore_match_release(s, &m);
    }
    /* Loading from disk gives the same bytes and promotes into RAM (the
     * writer's copy). */
    expect_load(s, t[1], 32, B, 1, KVSTORE_TIER_DISK);
    kvstore_flush(s);
    kvstore_stats(s, &st);
    assert_int_equal(st.hits_disk, 1);
    assert_true(st.ram_bytes <= 3 * B);
    assert_int_equal(kvstore_lookup(s, t[1], 32, &m), KVSTORE_OK);
    assert_int_equal(m.full_tier, KVSTORE_TIER_RAM);
    kvstore_match_release(s, &m);
    kvstore_close(s);
}

static void test_disk_budget(void **state)
{
    (void)state;
    const size_t B = 50000;
    /* RAM holds one blob; the disk holds three files. */
    kvstore_t *s = open_store(B, 3 * B + 3 * 1000, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[6][16];
    for (int i = 0; i < 6; i++) {
        seq(t[i], 16, 100 * i);
        assert_int_equal(kvstore_insert(s, t[i], 16, rand_blob(B, (uint64_t)i), B, false, NULL),
                         KVSTORE_OK);
        kvstore_flush(s);
    }
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_true(st.disk_bytes <= st.disk_budget);
    assert_true(st.ram_bytes <= B);
    assert_int_equal(st.evictions_disk, 3);
    uint64_t fbytes = 0;
    assert_int_equal(count_files(".kv", &fbytes), 3);
    assert_int_equal(fbytes, st.disk_bytes);
    /* The oldest ones are gone from both tiers. */
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, t[0], 16, &m), KVSTORE_OK);
    assert_null(m.full);
    kvstore_match_release(s, &m);
    expect_load(s, t[5], 16, B, 5, KVSTORE_TIER_NONE);
    expect_load(s, t[3], 16, B, 3, KVSTORE_TIER_DISK);
    kvstore_close(s);
}

static void test_pinned(void **state)
{
    (void)state;
    const size_t B = 40000;
    kvstore_t *s = open_store(2 * B, 3 * B + 3000, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[8][8];
    char ids[8][KVSTORE_ID_LEN + 1];
    for (int i = 0; i < 8; i++) {
        seq(t[i], 8, 10 * i);
        assert_int_equal(kvstore_insert(s, t[i], 8, rand_blob(B, (uint64_t)i), B, i == 0, ids[i]),
                         KVSTORE_OK);
        kvstore_flush(s);
    }
    /* Entry 0 is pinned: still in RAM and on disk despite both budgets. */
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, t[0], 8, &m), KVSTORE_OK);
    assert_int_equal(m.full_tier, KVSTORE_TIER_RAM);
    kvstore_entry_info_t info;
    kvstore_handle_info(s, m.full, &info);
    assert_true(info.pinned);
    assert_true(info.on_disk);
    kvstore_match_release(s, &m);
    char p[256];
    entry_path(p, sizeof p, ids[0]);
    assert_true(file_exists(p));
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_true(st.disk_bytes <= st.disk_budget);
    /* Pin a disk entry, unpin entry 0; the flags persist across reopen. */
    assert_int_equal(kvstore_set_pinned(s, ids[7], true), KVSTORE_OK);
    assert_int_equal(kvstore_set_pinned(s, ids[0], false), KVSTORE_OK);
    kvstore_close(s);
    s = open_store(2 * B, 3 * B + 3000, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_entry_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(s, &list, &n), KVSTORE_OK);
    assert_int_equal(n, 3);
    int seen = 0;
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(kvstore_tier_name(list[i].tier), "disk");
        if (strcmp(list[i].id, ids[7]) == 0) {
            assert_true(list[i].pinned);
            seen++;
        }
        if (strcmp(list[i].id, ids[0]) == 0) {
            assert_false(list[i].pinned);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    free(list);
    kvstore_close(s);
}

/* ---- disk tier across restarts ---- */

static void test_resume_and_reset(void **state)
{
    (void)state;
    const size_t B = 30000;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[3][40];
    char ids[3][KVSTORE_ID_LEN + 1];
    for (int i = 0; i < 3; i++) {
        seq(t[i], 40, 50 * i);
        assert_int_equal(kvstore_insert(s, t[i], 40, rand_blob(B + (size_t)i, (uint64_t)i),
                                        B + (size_t)i, false, ids[i]),
                         KVSTORE_OK);
    }
    /* A second store on the same directory is refused. */
    kvstore_config_t cfg;
    kvstore_config_default(&cfg);
    cfg.dir = g_dir;
    cfg.disk_budget = 1 << 20;
    kvstore_t *other = NULL;
    assert_int_equal(kvstore_open(&cfg, &other), KVSTORE_EBUSY);
    assert_null(other);
    kvstore_close(s);   /* flushes */
    assert_int_equal(count_files(".kv", NULL), 3);

    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 3);
    assert_int_equal(st.entries_disk, 3);
    assert_int_equal(st.ram_bytes, 0);
    for (int i = 0; i < 3; i++)
        expect_load(s, t[i], 40, B + (size_t)i, (uint64_t)i, KVSTORE_TIER_DISK);
    kvstore_stats(s, &st);
    assert_int_equal(st.hits_disk, 3);
    /* kvstore_reset removes everything, files included. */
    assert_int_equal(kvstore_reset(s), KVSTORE_OK);
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.ram_bytes, 0);
    assert_int_equal(st.disk_bytes, 0);
    assert_int_equal(count_files(".kv", NULL), 0);
    /* Open in reset mode wipes what a previous run left. */
    assert_int_equal(kvstore_insert(s, t[0], 40, rand_blob(B, 0), B, false, NULL), KVSTORE_OK);
    kvstore_close(s);
    assert_int_equal(count_files(".kv", NULL), 1);
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESET, FP, LAYOUT);
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(count_files(".kv", NULL), 0);
    kvstore_close(s);
}

static void test_corrupt_blob(void **state)
{
    (void)state;
    const size_t B = 20000;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[12];
    seq(t, 12, 5);
    char id[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, t, 12, rand_blob(B, 11), B, false, id), KVSTORE_OK);
    kvstore_close(s);

    /* Flip one byte near the end of the blob. */
    char p[256];
    entry_path(p, sizeof p, id);
    int fd = open(p, O_RDWR);
    assert_true(fd >= 0);
    struct stat stt;
    assert_int_equal(fstat(fd, &stt), 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, stt.st_size - 17), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, stt.st_size - 17), 1);
    close(fd);

    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, t, 12, &m), KVSTORE_OK);
    assert_non_null(m.full);
    assert_int_equal(m.full_tier, KVSTORE_TIER_DISK);
    const void *blob = NULL;
    size_t len = 0;
    assert_int_equal(kvstore_load(s, m.full, &blob, &len), KVSTORE_ECORRUPT);
    assert_null(blob);
    kvstore_match_release(s, &m);
    kvstore_flush(s);
    assert_false(file_exists(p));
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.disk_read_failures, 1);
    assert_int_equal(st.disk_bytes, 0);
    assert_int_equal(kvstore_lookup(s, t, 12, &m), KVSTORE_OK);
    assert_null(m.full);
    kvstore_close(s);
}

/* Copy file src to dst, keeping only the first `keep` bytes (all if < 0)
 * and XOR-ing byte `at` (if >= 0) with x. */
static void copy_file(const char *src, const char *dst, long keep, long at, unsigned char x)
{
    FILE *in = fopen(src, "rb");
    FILE *out = fopen(dst, "wb");
    assert_non_null(in);
    assert_non_null(out);
    long i = 0;
    int c;
    while ((c = fgetc(in)) != EOF && (keep < 0 || i < keep)) {
        if (i == at)
            c ^= x;
        fputc(c, out);
        i++;
    }
    fclose(in);
    fclose(out);
}

/* A copy of src (a file of the current format) with the u32 at `at` set
 * to v and the header checksum made right again, as a later format's
 * writer would leave it. */
static void copy_with_field(const char *src, const char *dst, long at, uint32_t v, long L, int n)
{
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    static unsigned char b[1 << 16];
    size_t len = fread(b, 1, sizeof b, in);
    fclose(in);
    long hl = 104 + L, hsum_at = 56 + L;
    assert_true((long)len > hl + 4L * n);
    memcpy(b + at, &v, 4);
    memset(b + hsum_at, 0, 8);
    uint64_t h = kvstore_checksum(b + hl, (size_t)n * 4, kvstore_checksum(b, (size_t)hl, 0));
    memcpy(b + hsum_at, &h, 8);
    FILE *out = fopen(dst, "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(b, 1, len, out), len);
    fclose(out);
}

static void test_bad_files_at_open(void **state)
{
    (void)state;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[10];
    seq(t, 10, 1);
    char id[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, t, 10, rand_blob(5000, 3), 5000, false, id), KVSTORE_OK);
    kvstore_close(s);
    char good[256], p[256];
    entry_path(good, sizeof good, id);
    /* The store writes the current format version. */
    FILE *gf = fopen(good, "rb");
    assert_non_null(gf);
    unsigned char head[12];
    assert_int_equal(fread(head, 1, sizeof head, gf), sizeof head);
    fclose(gf);
    assert_memory_equal(head, "KVCHATKV", 8);
    assert_int_equal(head[8] | head[9] << 8 | head[10] << 16 | (uint32_t)head[11] << 24,
                     KVSTORE_FORMAT_VERSION);
    /* Layout of the header: version at 8, layout at 24 (L bytes), then
     * n_tokens at 24+L. */
    long L = (long)strlen(LAYOUT);
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa1.kv", g_dir);
    copy_file(good, p, 4000, -1, 0);                 /* truncated */
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa2.kv", g_dir);
    copy_file(good, p, -1, 0, 0x01);                 /* wrong magic */
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa3.kv", g_dir);
    copy_file(good, p, -1, 8, 0x02);                 /* unknown version */
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa4.kv", g_dir);
    copy_file(good, p, -1, 24 + L + 1, 0x01);        /* n_tokens vs size */
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa5.kv", g_dir);
    copy_file(good, p, -1, 104 + L + 4, 0x01);       /* a token: header checksum */
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa6.kv", g_dir);
    copy_file(good, p, 10, -1, 0);                   /* header cut short */
    snprintf(p, sizeof p, "%s/aaaaaaaaaaaaaaa7.kv.tmp", g_dir);
    copy_file(good, p, 3000, -1, 0);                 /* leftover temp file */
    snprintf(p, sizeof p, "%s/notes.txt", g_dir);
    copy_file(good, p, 100, -1, 0);                  /* not ours: left alone */
    assert_int_equal(count_files(".kv", NULL), 7);

    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(count_files(".kv", NULL), 1);
    assert_int_equal(count_files(".tmp", NULL), 0);
    assert_int_equal(count_files(".txt", NULL), 1);
    assert_true(file_exists(good));
    expect_load(s, t, 10, 5000, 3, KVSTORE_TIER_DISK);
    kvstore_close(s);

    /* A later format's header (with a right checksum): an unknown flag, a
     * reserved field that is not zero, or a salt hash without the salted
     * flag is refused; rewritten the same way with the fields as they
     * were, the file still loads. */
    snprintf(p, sizeof p, "%s/kept", g_dir);
    assert_int_equal(rename(good, p), 0);
    const long fields[][2] = { { 52 + L, 1 }, { 48 + L, 8 }, { 100 + L, 1 }, { 52 + L, 0 } };
    for (int i = 0; i < 4; i++) {
        copy_with_field(p, good, fields[i][0], (uint32_t)fields[i][1], L, 10);
        s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
        kvstore_stats(s, &st);
        assert_int_equal(st.entries, i == 3 ? 1 : 0);
        if (i == 3)
            expect_load(s, t, 10, 5000, 3, KVSTORE_TIER_DISK);
        kvstore_close(s);
    }
    unlink(p);

    /* A file of format version 1 (same layout, header checksum right): of
     * another format, so skipped with a log line and removed. */
    char logp[300], v1[300];
    snprintf(logp, sizeof logp, "%s/log.txt", g_dir);
    snprintf(v1, sizeof v1, "%s/cccccccccccccccc.kv", g_dir);
    copy_with_field(good, v1, 8, 1, L, 10);
    assert_int_equal(log_open(logp), 0);
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    log_close();
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 1);   /* the good one */
    assert_false(file_exists(v1));
    kvstore_close(s);
    FILE *lf = fopen(logp, "r");
    assert_non_null(lf);
    char line[512];
    bool logged = false;
    while (fgets(line, sizeof line, lf))
        logged |= strstr(line, "cccccccccccccccc.kv") && strstr(line, "unknown format version 1");
    fclose(lf);
    unlink(logp);
    assert_true(logged);

    /* Another context layout: skipped and removed. */
    snprintf(p, sizeof p, "%s/bbbbbbbbbbbbbbbb.kv", g_dir);
    copy_file(good, p, -1, -1, 0);
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, "k=q8_0 v=q8_0 fa=1 unified=0 seqs=4 cells=4096");
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 0);
    kvstore_close(s);
    assert_int_equal(count_files(".kv", NULL), 0);
}

static void test_other_fingerprint(void **state)
{
    (void)state;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[10];
    seq(t, 10, 1);
    assert_int_equal(kvstore_insert(s, t, 10, rand_blob(5000, 3), 5000, false, NULL), KVSTORE_OK);
    kvstore_close(s);
    assert_int_equal(count_files(".kv", NULL), 1);
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP + 1, LAYOUT);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 0);
    kvstore_close(s);
    assert_int_equal(count_files(".kv", NULL), 0);
}

/* ---- salts (namespaces) ---- */

static kvstore_salt_t salt_of(const char *text)
{
    kvstore_salt_t k = { 0 };
    assert_int_equal(salt_hash(text, strlen(text), &k), SALT_OK);
    return k;
}

/* Look up toks[0..n) in the namespace `salt`; returns the full match's
 * length (0: none) and checks that its blob is the one of `seed`. */
static int salted_full(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *toks, int n,
                       size_t len, uint64_t seed)
{
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup_salted(s, salt, toks, n, &m), KVSTORE_OK);
    int got = m.full ? m.full_len : 0;
    if (m.full) {
        const void *p = NULL;
        size_t l = 0;
        assert_int_equal(kvstore_load(s, m.full, &p, &l), KVSTORE_OK);
        assert_int_equal(l, len);
        void *want = rand_blob(len, seed);
        assert_memory_equal(p, want, len);
        free(want);
        kvstore_entry_info_t info;
        kvstore_handle_info(s, m.full, &info);
        assert_true(kvstore_salt_equal(&info.salt, salt));
    }
    kvstore_match_release(s, &m);
    return got;
}

/* A lookup in `salt` that matches nothing at all, whole or in part. */
static void salted_miss(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *toks, int n)
{
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup_salted(s, salt, toks, n, &m), KVSTORE_OK);
    assert_null(m.full);
    assert_null(m.partial);
}

/* salt_hash is SHA-256 of the salt's bytes; its bounds; the namespace
 * equality. */
static void test_salt_hash(void **state)
{
    (void)state;
    kvstore_salt_t abc = { 0 };
    assert_int_equal(salt_hash("abc", 3, &abc), SALT_OK);   /* FIPS 180-2, B.1 */
    assert_true(abc.salted);
    char hex[SALT_HEX_LEN];
    salt_hex(&abc, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    char big[SALT_MAX_BYTES + 1];
    memset(big, 'a', sizeof big);
    kvstore_salt_t k = { 0 };
    assert_int_equal(salt_hash(big, SALT_MAX_BYTES, &k), SALT_OK);
    assert_false(kvstore_salt_equal(&k, &abc));
    kvstore_salt_t bad = { 0 };
    assert_int_equal(salt_hash(big, SALT_MAX_BYTES + 1, &bad), SALT_EINVAL);
    assert_int_equal(salt_hash("", 0, &bad), SALT_EINVAL);
    assert_int_equal(salt_hash("\xc3", 1, &bad), SALT_EINVAL);   /* cut UTF-8 */
    assert_int_equal(salt_hash(NULL, 3, &bad), SALT_EINVAL);
    assert_false(bad.salted);                                     /* untouched */
    assert_int_equal(salt_hash("\xc3\xa9t\xc3\xa9", 6, &bad), SALT_OK);
    salt_hex(NULL, hex);
    assert_string_equal(hex, "");
    kvstore_salt_t none = { 0 }, none2 = { .salted = false, .hash = { 7 } };
    salt_hex(&none2, hex);
    assert_string_equal(hex, "");
    assert_true(kvstore_salt_equal(NULL, NULL));
    assert_true(kvstore_salt_equal(NULL, &none));
    assert_true(kvstore_salt_equal(&none2, &none));   /* no salt: hash ignored */
    assert_false(kvstore_salt_equal(&abc, NULL));
    assert_false(kvstore_salt_equal(&none, &abc));
    kvstore_salt_t abc2 = salt_of("abc");
    assert_true(kvstore_salt_equal(&abc, &abc2));
    assert_string_not_equal(salt_strerror(SALT_EINVAL), salt_strerror(SALT_EHASH));
}

/* The same tokens stored without a salt, under salt A and under salt B are
 * three entries; each namespace finds only its own, whole or in part,
 * walks only its own, replaces only its own; a salt with no entries (or
 * whose entries are gone) finds nothing, even keys spelled like its hash. */
static void test_salt_namespaces(void **state)
{
    (void)state;
    kvstore_t *s = open_store(1 << 20, 0, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_salt_t A = salt_of("tenant A"), B = salt_of("tenant B"), C = salt_of("tenant C");
    const kvstore_salt_t *ns[3] = { NULL, &A, &B };
    int32_t d[100], q[120], r[90];
    seq(d, 100, 1000);
    seq(q, 120, 1000);   /* d, then more */
    seq(r, 90, 1000);
    r[80] = 5;           /* shares 80 tokens with d */
    char ids[3][KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, d, 100, rand_blob(5000, 1), 5000, false, ids[0]),
                     KVSTORE_OK);
    for (int i = 1; i < 3; i++)
        assert_int_equal(kvstore_insert_salted(s, ns[i], d, 100, rand_blob(5000, (uint64_t)i + 1),
                                               5000, false, false, ids[i]),
                         KVSTORE_OK);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(salted_full(s, ns[i], q, 120, 5000, (uint64_t)i + 1), 100);
        kvstore_match_t m;
        assert_int_equal(kvstore_lookup_salted(s, ns[i], r, 90, &m), KVSTORE_OK);
        assert_null(m.full);
        assert_non_null(m.partial);
        assert_int_equal(m.partial_len, 80);
        kvstore_entry_info_t info;
        kvstore_handle_info(s, m.partial, &info);
        assert_string_equal(info.id, ids[i]);
        kvstore_match_release(s, &m);
        struct lens l = { 0 };
        assert_int_equal(kvstore_foreach_extending_salted(s, ns[i], d, 10, collect_lens, &l), 0);
        assert_int_equal(l.n, 1);
    }
    /* kvstore_lookup is the namespace of no salt. */
    assert_int_equal(salted_full(s, NULL, q, 120, 5000, 1), 100);
    expect_load(s, d, 100, 5000, 1, KVSTORE_TIER_RAM);
    /* A salt nobody stored under: nothing at all. */
    salted_miss(s, &C, q, 120);
    salted_miss(s, &C, r, 90);
    struct lens l = { 0 };
    assert_int_equal(kvstore_foreach_extending_salted(s, &C, NULL, 0, collect_lens, &l), 0);
    assert_int_equal(l.n, 0);

    /* Replacing under B replaces B's entry only, keeping its hits. */
    char idb2[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert_salted(s, &B, d, 100, rand_blob(4000, 9), 4000, false, false,
                                           idb2),
                     KVSTORE_OK);
    assert_int_equal(salted_full(s, &B, d, 100, 4000, 9), 100);
    assert_int_equal(salted_full(s, &A, d, 100, 5000, 2), 100);
    assert_int_equal(salted_full(s, NULL, d, 100, 5000, 1), 100);
    kvstore_entry_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(s, &list, &n), KVSTORE_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        assert_string_not_equal(list[i].id, ids[2]);
        if (strcmp(list[i].id, idb2) == 0) {
            assert_true(kvstore_salt_equal(&list[i].salt, &B));
            assert_int_equal(list[i].hits, 2);   /* kept from the old one, + 1 */
        } else if (strcmp(list[i].id, ids[1]) == 0) {
            assert_true(kvstore_salt_equal(&list[i].salt, &A));
        } else {
            assert_string_equal(list[i].id, ids[0]);
            assert_false(list[i].salt.salted);
        }
    }
    free(list);

    /* A's last entry gone: A finds nothing, the others still find theirs;
     * a key stored without a salt that starts with A's hash words is not
     * A's either. */
    assert_int_equal(kvstore_delete(s, ids[1]), KVSTORE_OK);
    salted_miss(s, &A, q, 120);
    assert_int_equal(salted_full(s, &B, q, 120, 4000, 9), 100);
    assert_int_equal(salted_full(s, NULL, q, 120, 5000, 1), 100);
    int32_t spoof[8 + 100];
    memcpy(spoof, A.hash, sizeof A.hash);
    memcpy(spoof + 8, d, sizeof d);
    assert_int_equal(kvstore_insert(s, spoof, 108, rand_blob(100, 5), 100, false, NULL),
                     KVSTORE_OK);
    salted_miss(s, &A, d, 100);
    salted_miss(s, &A, spoof, 108);
    assert_int_equal(salted_full(s, NULL, spoof, 108, 100, 5), 108);
    /* And A can store again. */
    assert_int_equal(kvstore_insert_salted(s, &A, d, 50, rand_blob(300, 6), 300, false, false,
                                           NULL),
                     KVSTORE_OK);
    assert_int_equal(salted_full(s, &A, q, 120, 300, 6), 50);
    /* Disk only without a disk tier is refused under a salt too. */
    assert_int_equal(kvstore_insert_salted(s, &A, d, 60, rand_blob(300, 6), 300, false, true,
                                           NULL),
                     KVSTORE_EINVAL);
    /* Reset empties every namespace. */
    assert_int_equal(kvstore_reset(s), KVSTORE_OK);
    for (int i = 0; i < 3; i++)
        salted_miss(s, ns[i], q, 120);
    kvstore_close(s);
}

/* Whole file g_dir/<id>.kv into a malloc'd buffer. */
static unsigned char *slurp(const char *id, size_t *len)
{
    char p[256];
    entry_path(p, sizeof p, id);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return b;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Salted entries on disk: the file carries the salt's hash and flag, never
 * the salt; after a restart each entry is found in its namespace only,
 * flags (pinned, disk only) and all, and pinning rewrites a salted header
 * without losing the salt. */
static void test_salt_files(void **state)
{
    (void)state;
    static const char *const texts[2] = { "tenant A's secret salt", "tenant B's secret salt" };
    kvstore_salt_t A = salt_of(texts[0]), B = salt_of(texts[1]);
    const kvstore_salt_t *ns[3] = { NULL, &A, &B };
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t d[40];
    seq(d, 40, 77);
    char ids[3][KVSTORE_ID_LEN + 1];
    for (int i = 0; i < 3; i++)
        assert_int_equal(kvstore_insert_salted(s, ns[i], d, 40, rand_blob(6000, (uint64_t)i),
                                               6000, false, i == 2, ids[i]),
                         KVSTORE_OK);
    kvstore_close(s);

    const long L = (long)strlen(LAYOUT);
    for (int i = 0; i < 3; i++) {
        size_t len;
        unsigned char *f = slurp(ids[i], &len);
        assert_int_equal(le32(f + 8), KVSTORE_FORMAT_VERSION);
        assert_int_equal(len, 104 + L + 40 * 4 + 6000);
        uint32_t flags = le32(f + 48 + L);
        static const unsigned char zero[KVSTORE_SALT_LEN];
        if (i == 0) {
            assert_int_equal(flags & 4, 0);
            assert_memory_equal(f + 72 + L, zero, KVSTORE_SALT_LEN);
        } else {
            assert_int_equal(flags & 4, 4);
            assert_memory_equal(f + 72 + L, ns[i]->hash, KVSTORE_SALT_LEN);
        }
        for (int k = 0; k < 2; k++)
            assert_null(memmem(f, len, texts[k], strlen(texts[k])));
        free(f);
    }

    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 3);   /* the same tokens, not duplicates */
    kvstore_salt_t C = salt_of("tenant C");
    salted_miss(s, &C, d, 40);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(salted_full(s, ns[i], d, 40, 6000, (uint64_t)i), 40);
        kvstore_match_t m;
        assert_int_equal(kvstore_lookup_salted(s, ns[i], d, 40, &m), KVSTORE_OK);
        kvstore_entry_info_t info;
        kvstore_handle_info(s, m.full, &info);
        assert_string_equal(info.id, ids[i]);
        assert_int_equal(info.disk_only, i == 2);
        kvstore_match_release(s, &m);
    }
    assert_int_equal(kvstore_set_pinned(s, ids[1], true), KVSTORE_OK);
    kvstore_close(s);

    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_entry_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(s, &list, &n), KVSTORE_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        bool is_a = strcmp(list[i].id, ids[1]) == 0;
        assert_int_equal(list[i].pinned, is_a);
        if (is_a)
            assert_true(kvstore_salt_equal(&list[i].salt, &A));
    }
    free(list);
    assert_int_equal(salted_full(s, &A, d, 40, 6000, 1), 40);
    kvstore_close(s);
}

/* A file of format version 2 (before salts) still loads, as an entry
 * without a salt; pinning rewrites its header in version 2; one that
 * claims the salted flag is refused. */
static void test_v2_files(void **state)
{
    (void)state;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t d[30], e[30];
    seq(d, 30, 5);
    seq(e, 30, 500);
    char id[KVSTORE_ID_LEN + 1], id_e[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, d, 30, rand_blob(7000, 4), 7000, false, id), KVSTORE_OK);
    assert_int_equal(kvstore_insert(s, e, 30, rand_blob(700, 5), 700, false, id_e), KVSTORE_OK);
    kvstore_close(s);

    /* Version 2: the version 3 header without the salt hash. */
    const size_t L = strlen(LAYOUT), hl2 = 72 + L, hl3 = 104 + L;
    const char *const src[2] = { id, id_e }, *const dst[2] = { "dddddddddddddddd",
                                                                "eeeeeeeeeeeeeeee" };
    for (int k = 0; k < 2; k++) {
        size_t len;
        unsigned char *f = slurp(src[k], &len);
        size_t len2 = len - (hl3 - hl2);
        unsigned char *g = malloc(len2);
        assert_non_null(g);
        memcpy(g, f, hl2);
        memcpy(g + hl2, f + hl3, len - hl3);
        uint32_t v2 = 2, flags = k == 1 ? 4 : 0;   /* the second claims a salt */
        memcpy(g + 8, &v2, 4);
        memcpy(g + 48 + L, &flags, 4);
        memset(g + 56 + L, 0, 8);
        uint64_t h = kvstore_checksum(g + hl2, 30 * 4, kvstore_checksum(g, hl2, 0));
        memcpy(g + 56 + L, &h, 8);
        char p[256];
        entry_path(p, sizeof p, src[k]);
        assert_int_equal(unlink(p), 0);
        entry_path(p, sizeof p, dst[k]);
        FILE *out = fopen(p, "wb");
        assert_non_null(out);
        assert_int_equal(fwrite(g, 1, len2, out), len2);
        fclose(out);
        free(f);
        free(g);
    }
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 1);
    assert_int_equal(count_files(".kv", NULL), 1);
    expect_load(s, d, 30, 7000, 4, KVSTORE_TIER_DISK);
    kvstore_salt_t A = salt_of("tenant A");
    salted_miss(s, &A, d, 30);
    assert_int_equal(kvstore_set_pinned(s, dst[0], true), KVSTORE_OK);
    kvstore_close(s);
    size_t len;
    unsigned char *f = slurp(dst[0], &len);
    assert_int_equal(le32(f + 8), 2);
    assert_int_equal(le32(f + 48 + L), 1);
    assert_int_equal(len, hl2 + 30 * 4 + 7000);
    free(f);
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_entry_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(s, &list, &n), KVSTORE_OK);
    assert_int_equal(n, 1);
    assert_true(list[0].pinned);
    assert_false(list[0].salt.salted);
    free(list);
    expect_load(s, d, 30, 7000, 4, KVSTORE_TIER_DISK);
    kvstore_close(s);
}

/* ---- disk only ---- */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    int rc;
} written_t;

static void on_written(void *ud, int rc)
{
    written_t *w = ud;
    pthread_mutex_lock(&w->lock);
    w->calls++;
    w->rc = rc;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* kvstore_when_written(id), waited for; returns its rc (asserts one call). */
static int wait_written(kvstore_t *s, const char *id)
{
    written_t w = { .calls = 0 };
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    assert_int_equal(kvstore_when_written(s, id, on_written, &w), KVSTORE_OK);
    pthread_mutex_lock(&w.lock);
    while (w.calls == 0)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    kvstore_flush(s);   /* a second call would have come by now */
    assert_int_equal(w.calls, 1);
    pthread_mutex_destroy(&w.lock);
    pthread_cond_destroy(&w.cond);
    return w.rc;
}

static void test_disk_only(void **state)
{
    (void)state;
    const size_t B = 60000;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[3][20];
    char ids[3][KVSTORE_ID_LEN + 1];
    for (int i = 0; i < 3; i++)
        seq(t[i], 20, 100 * i);
    assert_int_equal(kvstore_insert_disk(s, t[0], 20, rand_blob(B, 30), B, false, ids[0]),
                     KVSTORE_OK);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, 0);   /* never in the RAM tier */
    assert_int_equal(wait_written(s, ids[0]), KVSTORE_OK);
    char p[256];
    entry_path(p, sizeof p, ids[0]);
    assert_true(file_exists(p));
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, 0);
    assert_int_equal(st.pending_bytes, 0);
    assert_int_equal(st.entries_ram, 0);
    assert_int_equal(st.entries_disk, 1);
    /* Already durable: told at once. Unknown ids: told so at once. */
    assert_int_equal(wait_written(s, ids[0]), KVSTORE_OK);
    assert_int_equal(wait_written(s, "0123456789abcdef"), KVSTORE_ENOTFOUND);

    /* Loads read the file (twice: not promoted) and give the same bytes. */
    for (int k = 0; k < 2; k++)
        expect_load(s, t[0], 20, B, 30, KVSTORE_TIER_DISK);
    kvstore_stats(s, &st);
    assert_int_equal(st.hits_disk, 2);
    assert_int_equal(st.ram_bytes, 0);
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, t[0], 20, &m), KVSTORE_OK);
    kvstore_entry_info_t info;
    kvstore_handle_info(s, m.full, &info);
    assert_true(info.disk_only);
    assert_true(info.on_disk);
    assert_int_equal(info.tier, KVSTORE_TIER_DISK);
    kvstore_match_release(s, &m);

    /* A RAM entry moved to the disk tier: out of RAM, written, flagged. */
    assert_int_equal(kvstore_insert(s, t[1], 20, rand_blob(B, 31), B, true, ids[1]), KVSTORE_OK);
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, B);
    assert_int_equal(kvstore_set_disk_only(s, ids[1]), KVSTORE_OK);
    assert_int_equal(wait_written(s, ids[1]), KVSTORE_OK);
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, 0);
    expect_load(s, t[1], 20, B, 31, KVSTORE_TIER_DISK);
    assert_int_equal(kvstore_set_disk_only(s, "0123456789abcdef"), KVSTORE_ENOTFOUND);
    /* A normal entry is still promoted. */
    assert_int_equal(kvstore_insert(s, t[2], 20, rand_blob(B, 32), B, false, ids[2]), KVSTORE_OK);
    kvstore_close(s);

    /* The flags survive a restart. */
    s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    kvstore_entry_info_t *list = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(s, &list, &n), KVSTORE_OK);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < n; i++) {
        bool want_disk = strcmp(list[i].id, ids[2]) != 0;
        assert_int_equal(list[i].disk_only, want_disk);
        assert_int_equal(list[i].pinned, strcmp(list[i].id, ids[1]) == 0);
    }
    free(list);
    for (int i = 0; i < 3; i++)
        expect_load(s, t[i], 20, B, (uint64_t)(30 + i), KVSTORE_TIER_DISK);
    kvstore_flush(s);
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, B);   /* only the normal one was promoted */
    kvstore_close(s);

    /* No disk tier: refused. */
    s = open_store(1 << 20, 0, KVSTORE_RESUME, FP, LAYOUT);
    assert_int_equal(kvstore_insert_disk(s, t[0], 20, rand_blob(B, 1), B, false, NULL),
                     KVSTORE_EINVAL);
    assert_int_equal(kvstore_insert(s, t[0], 20, rand_blob(B, 1), B, false, ids[0]), KVSTORE_OK);
    assert_int_equal(kvstore_set_disk_only(s, ids[0]), KVSTORE_EINVAL);
    assert_int_equal(wait_written(s, ids[0]), KVSTORE_ENOTFOUND);   /* no file, none coming */
    kvstore_close(s);
}

static void test_disk_only_full(void **state)
{
    (void)state;
    const size_t B = 50000;
    /* Room for two files; one pinned fills half of it. */
    kvstore_t *s = open_store(1 << 20, 2 * B + 2000, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[3][10];
    char ids[3][KVSTORE_ID_LEN + 1];
    for (int i = 0; i < 3; i++)
        seq(t[i], 10, 50 * i);
    /* Larger than the disk budget: refused at once, nothing stored. */
    assert_int_equal(kvstore_insert_disk(s, t[0], 10, rand_blob(3 * B, 1), 3 * B, false, NULL),
                     KVSTORE_ETOOBIG);
    assert_int_equal(kvstore_insert_disk(s, t[0], 10, rand_blob(B, 1), B, true, ids[0]), KVSTORE_OK);
    assert_int_equal(kvstore_insert_disk(s, t[1], 10, rand_blob(B, 2), B, true, ids[1]), KVSTORE_OK);
    assert_int_equal(wait_written(s, ids[0]), KVSTORE_OK);
    assert_int_equal(wait_written(s, ids[1]), KVSTORE_OK);
    /* Pinned files fill the budget: the third cannot be written and, with
     * no RAM copy, is dropped. */
    assert_int_equal(kvstore_insert_disk(s, t[2], 10, rand_blob(B, 3), B, false, ids[2]), KVSTORE_OK);
    assert_int_equal(wait_written(s, ids[2]), KVSTORE_ENOSPACE);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(count_files(".kv", NULL), 2);
    kvstore_close(s);

    /* A write error (a file size limit: EFBIG, as ENOSPC on a full disk). */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    s = open_store(1 << 20, 4 << 20, KVSTORE_RESET, FP, LAYOUT);
    lim = old;
    lim.rlim_cur = 16 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    assert_int_equal(kvstore_insert_disk(s, t[0], 10, rand_blob(B, 1), B, false, ids[0]), KVSTORE_OK);
    int rc = wait_written(s, ids[0]);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, KVSTORE_EIO);
    kvstore_stats(s, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.disk_write_failures, 1);
    /* Deleted before its write: ENOTFOUND. */
    assert_int_equal(kvstore_insert_disk(s, t[1], 10, rand_blob(B, 2), B, false, ids[1]), KVSTORE_OK);
    assert_int_equal(kvstore_delete(s, ids[1]), KVSTORE_OK);
    rc = wait_written(s, ids[1]);
    assert_true(rc == KVSTORE_ENOTFOUND);
    kvstore_close(s);
}

/* A disk load kept in RAM is copied (by the writer) into the buffer of the
 * last blob freed. */
static void test_spare_buffer(void **state)
{
    (void)state;
    const size_t B = (size_t)6 << 20;
    kvstore_t *s = open_store(2 * B + B / 2, 64 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[3][10];
    void *mem[3];
    for (int i = 0; i < 3; i++) {
        seq(t[i], 10, 1000 * i);
        mem[i] = rand_blob(B, (uint64_t)(40 + i));
        assert_int_equal(kvstore_insert(s, t[i], 10, mem[i], B, false, NULL), KVSTORE_OK);
        kvstore_flush(s);
    }
    /* The third insert evicted the first (written: its memory is free). */
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.evictions_ram, 1);
    assert_int_equal(st.spare_bytes, B);
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(s, t[0], 10, &m), KVSTORE_OK);
    assert_int_equal(m.full_tier, KVSTORE_TIER_DISK);
    const void *p = NULL;
    size_t len = 0;
    assert_int_equal(kvstore_load(s, m.full, &p, &len), KVSTORE_OK);
    void *want = rand_blob(B, 40);
    assert_memory_equal(p, want, B);   /* the file's mapping */
    kvstore_match_release(s, &m);
    kvstore_flush(s);
    kvstore_stats(s, &st);
    assert_int_equal(st.evictions_ram, 2);   /* the promotion evicted the second */
    assert_int_equal(st.spare_bytes, B);
    assert_int_equal(kvstore_lookup(s, t[0], 10, &m), KVSTORE_OK);
    assert_int_equal(m.full_tier, KVSTORE_TIER_RAM);
    assert_int_equal(kvstore_load(s, m.full, &p, &len), KVSTORE_OK);
    assert_ptr_equal(p, mem[0]);   /* its old buffer, copied into again */
    assert_memory_equal(p, want, B);
    free(want);
    kvstore_match_release(s, &m);
    assert_int_equal(kvstore_reset(s), KVSTORE_OK);
    kvstore_stats(s, &st);
    assert_int_equal(st.spare_bytes, 0);
    kvstore_close(s);
}

/* ---- failures ---- */

static void test_write_failure(void **state)
{
    (void)state;
    /* A file size limit makes write() fail with EFBIG once a file would
     * pass it, exactly where a full disk fails with ENOSPC. */
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    kvstore_t *s = open_store(1 << 20, 4 << 20, KVSTORE_RESUME, FP, LAYOUT);
    lim = old;
    lim.rlim_cur = 64 * 1024;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);

    int32_t t[16];
    seq(t, 16, 77);
    const size_t B = 200000;
    assert_int_equal(kvstore_insert(s, t, 16, rand_blob(B, 5), B, false, NULL), KVSTORE_OK);
    kvstore_flush(s);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);

    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.disk_write_failures, 1);
    assert_int_equal(st.entries, 1);
    assert_int_equal(st.entries_disk, 0);
    assert_int_equal(st.disk_bytes, 0);
    assert_int_equal(count_files(".kv", NULL), 0);
    assert_int_equal(count_files(".tmp", NULL), 0);
    /* Still served from RAM. */
    expect_load(s, t, 16, B, 5, KVSTORE_TIER_RAM);
    /* And the store keeps working once the disk has room again. */
    int32_t u[16];
    seq(u, 16, 900);
    assert_int_equal(kvstore_insert(s, u, 16, rand_blob(B, 6), B, false, NULL), KVSTORE_OK);
    kvstore_flush(s);
    kvstore_stats(s, &st);
    assert_int_equal(st.entries_disk, 1);
    assert_int_equal(count_files(".kv", NULL), 1);
    kvstore_close(s);
}

static void test_delete_while_held(void **state)
{
    (void)state;
    kvstore_t *s = open_store(1 << 20, 1 << 20, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[8];
    seq(t, 8, 3);
    char id[KVSTORE_ID_LEN + 1];
    assert_int_equal(kvstore_insert(s, t, 8, rand_blob(9000, 8), 9000, false, id), KVSTORE_OK);
    kvstore_flush(s);
    kvstore_match_t m1, m2;
    assert_int_equal(kvstore_lookup(s, t, 8, &m1), KVSTORE_OK);
    assert_int_equal(kvstore_lookup(s, t, 8, &m2), KVSTORE_OK);
    const void *p;
    size_t len;
    assert_int_equal(kvstore_load(s, m1.full, &p, &len), KVSTORE_OK);
    assert_int_equal(kvstore_delete(s, id), KVSTORE_OK);
    /* The loaded blob and the tokens stay valid; a later load is a miss. */
    void *want = rand_blob(9000, 8);
    assert_memory_equal(p, want, 9000);
    free(want);
    assert_memory_equal(kvstore_handle_tokens(m2.full), t, sizeof t);
    const void *p2 = NULL;
    assert_int_equal(kvstore_load(s, m2.full, &p2, &len), KVSTORE_ENOTFOUND);
    kvstore_entry_info_t info;
    kvstore_handle_info(s, m1.full, &info);
    assert_int_equal(info.tier, KVSTORE_TIER_NONE);
    char path[256];
    entry_path(path, sizeof path, id);
    kvstore_flush(s);
    assert_true(file_exists(path));   /* still referenced */
    kvstore_match_release(s, &m2);
    kvstore_match_release(s, &m1);
    kvstore_flush(s);
    assert_false(file_exists(path));
    kvstore_close(s);
}

/* ---- concurrency ---- */

#define CT_RAM 60000
#define CT_DISK 250000

/* cmocka's asserts must not run off the main thread: workers record the
 * first failed check here and the main thread asserts on it. */
static pthread_mutex_t g_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_fail_line;
static char g_fail_what[160];

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            pthread_mutex_lock(&g_fail_lock);                                    \
            if (!g_fail_line) {                                                  \
                g_fail_line = __LINE__;                                          \
                snprintf(g_fail_what, sizeof g_fail_what, "%s", #cond);          \
            }                                                                    \
            pthread_mutex_unlock(&g_fail_lock);                                  \
        }                                                                        \
    } while (0)

struct ct {
    kvstore_t *s;
    uint64_t seed;
    double deadline;
    long ops, loads, misses;
};

/* A token sequence from a few shared prefixes, so entries nest and
 * diverge; the blob is a function of the tokens. */
static int ct_tokens(uint64_t *rng, int32_t *t)
{
    *rng = mix(*rng);
    int doc = (int)(*rng % 4);
    int n = 4 + (int)((*rng >> 8) % 28);
    for (int i = 0; i < n; i++)
        t[i] = i < 6 ? doc * 100 + i : (int32_t)((*rng >> (12 + i % 40)) % 3);
    return n;
}

static size_t ct_blob_len(const int32_t *t, int n)
{
    return 500 + (size_t)(kvstore_checksum(t, (size_t)n * 4, 1) % 12000);
}

static uint64_t ct_blob_seed(const int32_t *t, int n)
{
    return kvstore_checksum(t, (size_t)n * 4, 2);
}

static void *ct_main(void *arg)
{
    struct ct *c = arg;
    uint64_t rng = c->seed;
    int32_t t[40];
    while (now_s() < c->deadline) {
        int n = ct_tokens(&rng, t);
        int op = (int)((rng >> 3) % 16);
        c->ops++;
        if (op < 5) {
            size_t len = ct_blob_len(t, n);
            void *blob = malloc(len);
            CHECK(blob != NULL);
            if (!blob)
                break;
            fill(blob, len, ct_blob_seed(t, n));
            int rc = kvstore_insert(c->s, t, n, blob, len, false, NULL);
            CHECK(rc == KVSTORE_OK);
        } else if (op < 12) {
            kvstore_match_t m;
            CHECK(kvstore_lookup(c->s, t, n, &m) == KVSTORE_OK);
            kvstore_handle_t *h = (op & 1) && m.partial ? m.partial : m.full;
            if (h) {
                const void *p;
                size_t len;
                int rc = kvstore_load(c->s, h, &p, &len);
                if (rc == KVSTORE_OK) {
                    const int32_t *et;
                    int en;
                    kvstore_get_tokens(h, &et, &en);
                    CHECK(len == ct_blob_len(et, en));
                    void *want = malloc(len);
                    CHECK(want != NULL);
                    if (want) {
                        fill(want, len, ct_blob_seed(et, en));
                        CHECK(memcmp(p, want, len) == 0);
                        free(want);
                    }
                    c->loads++;
                } else {
                    CHECK(rc == KVSTORE_ENOTFOUND);   /* deleted or dropped meanwhile */
                    c->misses++;
                }
            }
            if (op == 11 && m.full)
                kvstore_touch(c->s, m.full);
            kvstore_match_release(c->s, &m);
        } else if (op < 14) {
            kvstore_entry_info_t *list = NULL;
            size_t cnt = 0;
            CHECK(kvstore_list(c->s, &list, &cnt) == KVSTORE_OK);
            if (cnt > 0) {
                const char *id = list[rng % cnt].id;
                int rc = op == 12 ? kvstore_delete(c->s, id)
                                  : kvstore_set_pinned(c->s, id, (rng >> 20) & 1);
                CHECK(rc == KVSTORE_OK || rc == KVSTORE_ENOTFOUND);
            }
            free(list);
        } else {
            kvstore_stats_t st;
            kvstore_stats(c->s, &st);
            CHECK(st.entries < 100000);
        }
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    kvstore_t *s = open_store(CT_RAM, CT_DISK, KVSTORE_RESUME, FP, LAYOUT);
    struct ct c[4];
    pthread_t th[4];
    double deadline = now_s() + 1.0;
    for (int i = 0; i < 4; i++) {
        c[i] = (struct ct){ s, 0x1234567ull * (uint64_t)(i + 1), deadline, 0, 0, 0 };
        assert_int_equal(pthread_create(&th[i], NULL, ct_main, &c[i]), 0);
    }
    long ops = 0, loads = 0, misses = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ops += c[i].ops;
        loads += c[i].loads;
        misses += c[i].misses;
    }
    if (g_fail_line)
        fail_msg("worker check failed at line %d: %s", g_fail_line, g_fail_what);
    /* Unpin everything so both budgets apply to every entry (the writer
     * may still drop entries meanwhile: ENOTFOUND is fine). */
    kvstore_entry_info_t *list = NULL;
    size_t cnt = 0;
    assert_int_equal(kvstore_list(s, &list, &cnt), KVSTORE_OK);
    for (size_t i = 0; i < cnt; i++) {
        int rc = kvstore_set_pinned(s, list[i].id, false);
        assert_true(rc == KVSTORE_OK || rc == KVSTORE_ENOTFOUND);
    }
    free(list);
    kvstore_flush(s);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    printf("kvstore concurrent: %ld ops, %ld loads verified, %ld misses; %zu entries, "
           "%llu RAM / %llu disk evictions, %llu writes\n",
           ops, loads, misses, st.entries, (unsigned long long)st.evictions_ram,
           (unsigned long long)st.evictions_disk, (unsigned long long)st.disk_writes);
    assert_true(st.ram_bytes <= CT_RAM);
    assert_true(st.disk_bytes <= CT_DISK);
    assert_int_equal(st.pending_writes, 0);
    assert_int_equal(st.disk_write_failures, 0);
    uint64_t fbytes = 0;
    assert_int_equal((size_t)count_files(".kv", &fbytes), st.entries_disk);
    assert_int_equal(fbytes, st.disk_bytes);
    assert_int_equal(count_files(".tmp", NULL), 0);
    assert_true(st.evictions_ram > 0);
    size_t on_disk = st.entries_disk;
    kvstore_close(s);

    /* Everything on disk comes back and loads intact. */
    s = open_store(CT_RAM, CT_DISK, KVSTORE_RESUME, FP, LAYOUT);
    assert_int_equal(kvstore_list(s, &list, &cnt), KVSTORE_OK);
    assert_int_equal(cnt, on_disk);
    free(list);
    uint64_t rng = 99;
    int32_t t[40];
    for (int i = 0; i < 2000; i++) {
        int n = ct_tokens(&rng, t);
        kvstore_match_t m;
        assert_int_equal(kvstore_lookup(s, t, n, &m), KVSTORE_OK);
        if (m.full) {
            const void *p;
            size_t len;
            assert_int_equal(kvstore_load(s, m.full, &p, &len), KVSTORE_OK);
            const int32_t *et;
            int en;
            kvstore_get_tokens(m.full, &et, &en);
            void *want = rand_blob(len, ct_blob_seed(et, en));
            assert_int_equal(len, ct_blob_len(et, en));
            assert_memory_equal(p, want, len);
            free(want);
        }
        kvstore_match_release(s, &m);
    }
    kvstore_stats(s, &st);
    assert_int_equal(st.disk_read_failures, 0);
    kvstore_close(s);
}

/* ---- throughput ---- */

static void test_load_throughput(void **state)
{
    (void)state;
    const size_t B = (size_t)50 << 20;
    /* RAM budget below the blob: it goes straight to disk and every load
     * reads the file (from the page cache, just written). */
    kvstore_t *s = open_store(1 << 20, (uint64_t)1 << 30, KVSTORE_RESUME, FP, LAYOUT);
    int32_t t[4000];
    seq(t, 4000, 0);
    void *blob = hugemem_alloc(B);
    assert_non_null(blob);
    fill(blob, B, 50);
    assert_int_equal(kvstore_insert(s, t, 4000, blob, B, false, NULL), KVSTORE_OK);
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    assert_int_equal(st.ram_bytes, 0);
    kvstore_flush(s);
    kvstore_stats(s, &st);
    assert_int_equal(st.entries_disk, 1);
    assert_int_equal(st.pending_bytes, 0);
    double best = 1e9, total = 0;
    const int rounds = 5;
    void *want = rand_blob(B, 50);
    for (int i = 0; i < rounds; i++) {
        kvstore_match_t m;
        assert_int_equal(kvstore_lookup(s, t, 4000, &m), KVSTORE_OK);
        assert_int_equal(m.full_tier, KVSTORE_TIER_DISK);
        const void *p;
        size_t len;
        double t0 = now_s();
        assert_int_equal(kvstore_load(s, m.full, &p, &len), KVSTORE_OK);
        double dt = now_s() - t0;
        assert_int_equal(len, B);
        if (i == 0)
            assert_memory_equal(p, want, B);
        kvstore_match_release(s, &m);
        total += dt;
        if (dt < best)
            best = dt;
    }
    free(want);
    printf("kvstore load from disk: 50 MiB in %.1f ms best (%.0f MB/s), %.1f ms mean\n",
           best * 1e3, (double)B / best / 1e6, total / rounds * 1e3);
    kvstore_stats(s, &st);
    assert_int_equal(st.hits_disk, (uint64_t)rounds);
    kvstore_close(s);
}

int main(void)
{
    log_set_level(LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checksum),
        cmocka_unit_test(test_insert_lookup),
        cmocka_unit_test(test_ram_only_pinned_full),
        cmocka_unit_test_setup_teardown(test_ram_lru_demotes_to_disk, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_disk_budget, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_pinned, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_resume_and_reset, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_corrupt_blob, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_bad_files_at_open, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_other_fingerprint, setup_dir, teardown_dir),
        cmocka_unit_test(test_salt_hash),
        cmocka_unit_test(test_salt_namespaces),
        cmocka_unit_test_setup_teardown(test_salt_files, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_v2_files, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_disk_only, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_disk_only_full, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_spare_buffer, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_write_failure, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_delete_while_held, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_concurrent, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_load_throughput, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
