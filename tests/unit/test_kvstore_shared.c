/* test_kvstore_shared.c — the shared tier of the KV-cache store (kvstore.h,
 * SHARED TIER): several stores, each with its own disk tier, on one shared
 * directory, as several engines on one NFS export would be.
 *
 * Every test works in its own directory made with mkdtemp under /tmp
 * (a/ and b/ for the stores' disk tiers, sh/ shared) and removed
 * afterwards; rescans are run by hand (shared_rescan_ms 0) so that what a
 * store has seen is known, except in the test of the rescan thread.
 *
 * - an entry inserted by one store is written to the shared directory
 *   once, found by the other after its rescan, loaded with equal bytes and
 *   counted as a shared hit; the tier is SHARED, then RAM once loaded;
 * - the same tokens written by two stores are one file, the second write
 *   skipped; a store that is killed (closed) does not matter to the other;
 * - the rescan thread finds a new file by itself;
 * - a file deleted between lookup and load is a miss (shared_lost) and
 *   leaves the index; a vanished name leaves it at the next rescan;
 * - corrupt, truncated, misnamed and foreign (other model) files are
 *   skipped and counted, never loaded; a blob corrupted after indexing
 *   fails its checksum on load (a miss);
 * - salts: files carry the salt's hash; the other store finds them in
 *   their namespace only;
 * - eviction: two stores evicting at once over one budget (threads) leave
 *   the directory within it, consistent with both indexes, without
 *   crashing; files within the grace period are never deleted;
 * - a failing shared write (the directory gone, as a full or failing
 *   share) is counted; the entry keeps its local copies.
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "engine/kvstore.h"
#include "engine/salt.h"

#define FP 0x1122334455667788ull
#define LAYOUT "k=f16 v=f16 fa=1 unified=0 seqs=4 cells=4096"

static char g_root[64], g_a[96], g_b[96], g_sh[96];

/* ---- helpers ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void *rand_blob(size_t n, uint64_t seed)
{
    unsigned char *p = malloc(n);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(mix(seed + i / 8) >> (8 * (i % 8)));
    return p;
}

static void seq(int32_t *t, int n, int32_t base)
{
    for (int i = 0; i < n; i++)
        t[i] = base + i;
}

static kvstore_t *open_shared(const char *dir, uint64_t fp, uint64_t shared_budget,
                              unsigned grace_ms, unsigned rescan_ms)
{
    kvstore_config_t cfg;
    kvstore_config_default(&cfg);
    cfg.ram_budget = 64 << 20;
    cfg.disk_budget = 256 << 20;
    cfg.dir = dir;
    cfg.fingerprint = fp;
    cfg.layout = LAYOUT;
    cfg.shared_dir = g_sh;
    cfg.shared_budget = shared_budget;
    cfg.shared_grace_ms = grace_ms;
    cfg.shared_rescan_ms = rescan_ms;
    kvstore_t *s = NULL;
    assert_int_equal(kvstore_open(&cfg, &s), KVSTORE_OK);
    return s;
}

/* Entry files in the shared directory (names ending in ".kvs"); their
 * bytes summed in *bytes; *tmp counts temporary ones. */
static int shared_files(uint64_t *bytes, int *tmp)
{
    DIR *d = opendir(g_sh);
    assert_non_null(d);
    int n = 0, t = 0;
    uint64_t sum = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        char p[512];
        snprintf(p, sizeof p, "%s/%s", g_sh, de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".kvs") == 0) {
            struct stat st;
            assert_int_equal(stat(p, &st), 0);
            sum += (uint64_t)st.st_size;
            n++;
        } else if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
            t++;
        }
    }
    closedir(d);
    if (bytes)
        *bytes = sum;
    if (tmp)
        *tmp = t;
    return n;
}

/* The path of a shared entry file (the first one listed). */
static void a_shared_file(char *out, size_t cap)
{
    DIR *d = opendir(g_sh);
    assert_non_null(d);
    struct dirent *de;
    out[0] = '\0';
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".kvs") == 0) {
            snprintf(out, cap, "%s/%s", g_sh, de->d_name);
            break;
        }
    }
    closedir(d);
    assert_true(out[0] != '\0');
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/kvstore-shared-XXXXXX");
    if (!mkdtemp(g_root))
        return -1;
    snprintf(g_a, sizeof g_a, "%s/a", g_root);
    snprintf(g_b, sizeof g_b, "%s/b", g_root);
    snprintf(g_sh, sizeof g_sh, "%s/sh", g_root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rm_tree(g_root);
    return 0;
}

/* Look up toks[0..n) under salt; when want_tier is not NONE, expect a full
 * match of all n tokens in that tier, load it and compare with the blob of
 * `seed`; returns the load's rc (KVSTORE_ENOTFOUND for no match). */
static int lookup_load(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *toks, int n,
                       size_t len, uint64_t seed, kvstore_tier_t want_tier)
{
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup_salted(s, salt, toks, n, &m), KVSTORE_OK);
    if (!m.full || m.full_len != n) {
        kvstore_match_release(s, &m);
        return KVSTORE_ENOTFOUND;
    }
    if (want_tier != KVSTORE_TIER_NONE)
        assert_int_equal(m.full_tier, want_tier);
    const void *blob = NULL;
    size_t got = 0;
    int rc = kvstore_load(s, m.full, &blob, &got);
    if (rc == KVSTORE_OK) {
        void *want = rand_blob(len, seed);
        assert_int_equal(got, len);
        assert_memory_equal(blob, want, len);
        free(want);
    }
    kvstore_match_release(s, &m);
    return rc;
}

static void insert(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *toks, int n,
                   size_t len, uint64_t seed)
{
    assert_int_equal(kvstore_insert_salted(s, salt, toks, n, rand_blob(len, seed), len, false,
                                           false, NULL),
                     KVSTORE_OK);
}

/* ---- tests ---- */

static void test_takeover(void **state)
{
    (void)state;
    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    kvstore_t *b = open_shared(g_b, FP, 1 << 30, 60000, 0);
    int32_t t[300];
    seq(t, 300, 1000);
    insert(a, NULL, t, 300, 100000, 7);
    kvstore_flush(a);
    kvstore_stats_t st;
    kvstore_stats(a, &st);
    assert_int_equal(st.shared_writes, 1);
    assert_int_equal(st.entries_shared, 1);
    int tmp = -1;
    assert_int_equal(shared_files(NULL, &tmp), 1);
    assert_int_equal(tmp, 0);

    /* b has not looked yet: a miss. */
    assert_int_equal(lookup_load(b, NULL, t, 300, 100000, 7, KVSTORE_TIER_NONE), KVSTORE_ENOTFOUND);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    /* a dies: b does not care. */
    kvstore_close(a);
    assert_int_equal(lookup_load(b, NULL, t, 300, 100000, 7, KVSTORE_TIER_SHARED), KVSTORE_OK);
    /* A longer prompt finds it as its prefix. */
    int32_t longer[310];
    seq(longer, 310, 1000);
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(b, longer, 310, &m), KVSTORE_OK);
    assert_non_null(m.full);
    assert_int_equal(m.full_len, 300);
    kvstore_match_release(b, &m);
    kvstore_stats(b, &st);
    assert_int_equal(st.hits_shared, 1);
    assert_int_equal(st.entries_shared, 1);
    assert_int_equal(st.shared_writes, 0);
    kvstore_entry_info_t *all = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(b, &all, &n), KVSTORE_OK);
    assert_int_equal(n, 1);
    assert_true(all[0].shared);
    assert_false(all[0].on_disk);
    free(all);
    /* Loaded once, it is in b's RAM now. */
    kvstore_flush(b);
    assert_int_equal(lookup_load(b, NULL, t, 300, 100000, 7, KVSTORE_TIER_RAM), KVSTORE_OK);
    kvstore_close(b);

    /* A third store sees it at open (no rescan needed). */
    kvstore_t *c = open_shared(g_b, FP, 1 << 30, 60000, 0);
    assert_int_equal(lookup_load(c, NULL, t, 300, 100000, 7, KVSTORE_TIER_SHARED), KVSTORE_OK);
    kvstore_close(c);
}

static void test_written_once(void **state)
{
    (void)state;
    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    kvstore_t *b = open_shared(g_b, FP, 1 << 30, 60000, 0);
    int32_t t[64];
    seq(t, 64, 5);
    insert(a, NULL, t, 64, 5000, 1);
    insert(b, NULL, t, 64, 5000, 2);   /* same tokens, other bytes, not yet seen */
    kvstore_flush(a);
    kvstore_flush(b);
    assert_int_equal(shared_files(NULL, NULL), 1);
    kvstore_stats_t sa, sb;
    kvstore_stats(a, &sa);
    kvstore_stats(b, &sb);
    assert_int_equal(sa.shared_writes + sb.shared_writes, 1);
    assert_int_equal(sa.shared_write_skips + sb.shared_write_skips, 1);
    /* Each keeps its own bytes (its local file comes first). */
    assert_int_equal(lookup_load(a, NULL, t, 64, 5000, 1, KVSTORE_TIER_NONE), KVSTORE_OK);
    assert_int_equal(lookup_load(b, NULL, t, 64, 5000, 2, KVSTORE_TIER_NONE), KVSTORE_OK);
    /* The rescan notes the file on the existing entries: still one entry each. */
    assert_int_equal(kvstore_shared_rescan(a), KVSTORE_OK);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    kvstore_stats(a, &sa);
    kvstore_stats(b, &sb);
    assert_int_equal(sa.entries, 1);
    assert_int_equal(sb.entries, 1);
    assert_int_equal(sa.entries_shared, 1);
    assert_int_equal(sb.entries_shared, 1);
    kvstore_close(a);
    kvstore_close(b);
}

static void test_rescan_thread(void **state)
{
    (void)state;
    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    kvstore_t *b = open_shared(g_b, FP, 1 << 30, 60000, 50);
    int32_t t[40];
    seq(t, 40, 77);
    insert(a, NULL, t, 40, 3000, 3);
    kvstore_flush(a);
    int rc = KVSTORE_ENOTFOUND;
    for (int i = 0; i < 200 && rc == KVSTORE_ENOTFOUND; i++) {
        rc = lookup_load(b, NULL, t, 40, 3000, 3, KVSTORE_TIER_SHARED);
        if (rc == KVSTORE_ENOTFOUND)
            usleep(10000);
    }
    assert_int_equal(rc, KVSTORE_OK);
    kvstore_close(b);
    kvstore_close(a);
}

static void test_deleted_before_load(void **state)
{
    (void)state;
    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    kvstore_t *b = open_shared(g_b, FP, 1 << 30, 60000, 0);
    int32_t t[50], u[50];
    seq(t, 50, 1);
    seq(u, 50, 9000);
    insert(a, NULL, t, 50, 4000, 4);
    kvstore_flush(a);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    char p[512];
    a_shared_file(p, sizeof p);

    /* Looked up, then deleted (by another engine's eviction), then loaded. */
    kvstore_match_t m;
    assert_int_equal(kvstore_lookup(b, t, 50, &m), KVSTORE_OK);
    assert_non_null(m.full);
    assert_int_equal(m.full_tier, KVSTORE_TIER_SHARED);
    assert_int_equal(unlink(p), 0);
    const void *blob;
    size_t len;
    assert_int_equal(kvstore_load(b, m.full, &blob, &len), KVSTORE_ENOTFOUND);
    kvstore_match_release(b, &m);
    kvstore_stats_t st;
    kvstore_stats(b, &st);
    assert_int_equal(st.shared_lost, 1);
    assert_int_equal(st.hits_shared, 0);
    assert_int_equal(st.entries, 0);   /* it had nothing else */
    assert_int_equal(lookup_load(b, NULL, t, 50, 4000, 4, KVSTORE_TIER_NONE), KVSTORE_ENOTFOUND);

    /* A name that vanishes between two rescans leaves the index. */
    insert(a, NULL, u, 50, 4000, 5);
    kvstore_flush(a);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    kvstore_stats(b, &st);
    assert_int_equal(st.entries_shared, 1);
    a_shared_file(p, sizeof p);
    assert_int_equal(unlink(p), 0);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    kvstore_stats(b, &st);
    assert_int_equal(st.entries, 0);
    /* a keeps its entry (its local file). */
    assert_int_equal(kvstore_shared_rescan(a), KVSTORE_OK);
    assert_int_equal(lookup_load(a, NULL, u, 50, 4000, 5, KVSTORE_TIER_NONE), KVSTORE_OK);
    kvstore_close(a);
    kvstore_close(b);
}

/* Copy src to dst, the byte at `at` xor'ed with x (at < 0: none), keeping
 * the first `keep` bytes only (keep < 0: all). */
static void copy_file(const char *src, const char *dst, long keep, long at, unsigned char x)
{
    FILE *in = fopen(src, "rb");
    assert_non_null(in);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, in), (size_t)n);
    fclose(in);
    if (at >= 0)
        buf[at] ^= x;
    FILE *out = fopen(dst, "wb");
    assert_non_null(out);
    fwrite(buf, 1, (size_t)(keep >= 0 ? keep : n), out);
    fclose(out);
    free(buf);
}

static void test_bad_files(void **state)
{
    (void)state;
    /* A store of another model writes a file: foreign to ours. */
    kvstore_t *o = open_shared(g_b, FP ^ 1, 1 << 30, 60000, 0);
    int32_t f[20];
    seq(f, 20, 300);
    insert(o, NULL, f, 20, 1000, 9);
    kvstore_flush(o);
    kvstore_close(o);
    rm_tree(g_b);

    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    int32_t t[30];
    seq(t, 30, 50);
    insert(a, NULL, t, 30, 2000, 6);
    kvstore_flush(a);
    kvstore_close(a);
    rm_tree(g_a);
    /* Find the file of FP (not the foreign one): the one a wrote last. */
    char good[512] = "";
    {
        DIR *d = opendir(g_sh);
        struct dirent *de;
        time_t newest = 0;
        while ((de = readdir(d)) != NULL) {
            size_t l = strlen(de->d_name);
            if (l < 4 || strcmp(de->d_name + l - 4, ".kvs") != 0)
                continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", g_sh, de->d_name);
            struct stat st;
            stat(p, &st);
            int32_t first = 0;
            FILE *fp = fopen(p, "rb");
            assert_non_null(fp);
            long hl = 24 + (long)strlen(LAYOUT) + 80;
            fseek(fp, hl, SEEK_SET);
            assert_int_equal(fread(&first, 4, 1, fp), 1);
            fclose(fp);
            if (first == 50)
                snprintf(good, sizeof good, "%s", p);
            (void)newest;
        }
        closedir(d);
    }
    assert_true(good[0] != '\0');
    const char *hex = "0123456789abcdef";
    char bad[6][512];
    for (int i = 0; i < 6; i++) {
        char name[40];
        for (int k = 0; k < 32; k++)
            name[k] = hex[(i * 7 + k) % 16];
        name[32] = '\0';
        snprintf(bad[i], sizeof bad[i], "%s/%s.kvs", g_sh, name);
    }
    struct stat st;
    assert_int_equal(stat(good, &st), 0);
    long hl = 24 + (long)strlen(LAYOUT) + 80;
    copy_file(good, bad[0], 40, -1, 0);                 /* truncated header */
    copy_file(good, bad[1], st.st_size - 10, -1, 0);    /* truncated blob */
    copy_file(good, bad[2], -1, 0, 0x20);               /* bad magic */
    copy_file(good, bad[3], -1, hl + 4, 0x01);          /* token flipped: header sum */
    copy_file(good, bad[4], -1, -1, 0);                 /* valid, misnamed */
    FILE *junk = fopen(bad[5], "wb");
    assert_non_null(junk);
    fputs("not a cache entry", junk);
    fclose(junk);
    mkdir(g_a, 0755);

    kvstore_t *b = open_shared(g_a, FP, 1 << 30, 60000, 0);
    kvstore_stats_t s;
    kvstore_stats(b, &s);
    assert_int_equal(s.shared_skipped, 7);   /* six bad, one foreign */
    assert_int_equal(s.entries, 1);
    assert_int_equal(lookup_load(b, NULL, t, 30, 2000, 6, KVSTORE_TIER_SHARED), KVSTORE_OK);
    assert_int_equal(lookup_load(b, NULL, f, 20, 1000, 9, KVSTORE_TIER_NONE), KVSTORE_ENOTFOUND);
    /* Seen once: a rescan does not count them again; nothing was deleted. */
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    kvstore_stats(b, &s);
    assert_int_equal(s.shared_skipped, 7);
    assert_int_equal(shared_files(NULL, NULL), 8);
    kvstore_close(b);

    /* A blob corrupted after indexing fails its checksum on load: a miss. */
    rm_tree(g_a);
    kvstore_t *c = open_shared(g_a, FP, 1 << 30, 60000, 0);
    int fd = open(good, O_RDWR);
    assert_true(fd >= 0);
    unsigned char byte;
    assert_int_equal(pread(fd, &byte, 1, st.st_size - 1), 1);
    byte ^= 0x80;
    assert_int_equal(pwrite(fd, &byte, 1, st.st_size - 1), 1);
    close(fd);
    assert_int_equal(lookup_load(c, NULL, t, 30, 2000, 6, KVSTORE_TIER_SHARED), KVSTORE_ECORRUPT);
    kvstore_stats(c, &s);
    assert_int_equal(s.shared_read_failures, 1);
    assert_int_equal(s.entries, 0);
    kvstore_close(c);
}

static void test_salts(void **state)
{
    (void)state;
    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    kvstore_t *b = open_shared(g_b, FP, 1 << 30, 60000, 0);
    kvstore_salt_t x = { .salted = true }, y = { .salted = true };
    assert_int_equal(salt_hash("tenant-x", strlen("tenant-x"), &x), 0);
    assert_int_equal(salt_hash("tenant-y", strlen("tenant-y"), &y), 0);
    int32_t t[32];
    seq(t, 32, 400);
    insert(a, &x, t, 32, 2500, 11);
    kvstore_flush(a);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    assert_int_equal(lookup_load(b, NULL, t, 32, 2500, 11, KVSTORE_TIER_NONE), KVSTORE_ENOTFOUND);
    assert_int_equal(lookup_load(b, &y, t, 32, 2500, 11, KVSTORE_TIER_NONE), KVSTORE_ENOTFOUND);
    assert_int_equal(lookup_load(b, &x, t, 32, 2500, 11, KVSTORE_TIER_SHARED), KVSTORE_OK);
    kvstore_entry_info_t *all = NULL;
    size_t n = 0;
    assert_int_equal(kvstore_list(b, &all, &n), KVSTORE_OK);
    assert_int_equal(n, 1);
    assert_true(kvstore_salt_equal(&all[0].salt, &x));
    free(all);
    /* The file holds the hash, never the salt. */
    char p[512];
    a_shared_file(p, sizeof p);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char buf[1024];
    size_t got = fread(buf, 1, sizeof buf, f);
    fclose(f);
    assert_null(memmem(buf, got, "tenant-x", 8));
    assert_non_null(memmem(buf, got, x.hash, KVSTORE_SALT_LEN));
    /* The same tokens without a salt are another file. */
    insert(a, NULL, t, 32, 2500, 12);
    kvstore_flush(a);
    assert_int_equal(shared_files(NULL, NULL), 2);
    assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    assert_int_equal(lookup_load(b, NULL, t, 32, 2500, 12, KVSTORE_TIER_SHARED), KVSTORE_OK);
    kvstore_close(a);
    kvstore_close(b);
}

struct evictor {
    kvstore_t *s;
    int base;
    int rounds;
};

static void *evict_main(void *arg)
{
    struct evictor *ev = arg;
    for (int i = 0; i < ev->rounds; i++) {
        int32_t t[16];
        seq(t, 16, ev->base + i * 100);
        insert(ev->s, NULL, t, 16, 20000, (uint64_t)(ev->base + i));
        kvstore_flush(ev->s);
        assert_int_equal(kvstore_shared_rescan(ev->s), KVSTORE_OK);
        /* Load whatever the other wrote last, if still there. */
        int32_t u[16];
        seq(u, 16, (ev->base == 0 ? 1000000 : 0) + i * 100);
        kvstore_match_t m;
        assert_int_equal(kvstore_lookup(ev->s, u, 16, &m), KVSTORE_OK);
        if (m.full) {
            const void *blob;
            size_t len;
            int rc = kvstore_load(ev->s, m.full, &blob, &len);
            assert_true(rc == KVSTORE_OK || rc == KVSTORE_ENOTFOUND);
        }
        kvstore_match_release(ev->s, &m);
    }
    return NULL;
}

static void test_concurrent_eviction(void **state)
{
    (void)state;
    /* Room for about 8 files of ~20 KB; grace 0: anything may go. */
    const uint64_t budget = 8 * 20500;
    kvstore_t *a = open_shared(g_a, FP, budget, 0, 0);
    kvstore_t *b = open_shared(g_b, FP, budget, 0, 0);
    struct evictor ea = { a, 0, 40 }, eb = { b, 1000000, 40 };
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, evict_main, &ea), 0);
    assert_int_equal(pthread_create(&tb, NULL, evict_main, &eb), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    /* Twice round: a rescan may evict (over the budget), which the other
     * store's earlier rescan did not see. */
    for (int round = 0; round < 2; round++) {
        assert_int_equal(kvstore_shared_rescan(a), KVSTORE_OK);
        assert_int_equal(kvstore_shared_rescan(b), KVSTORE_OK);
    }
    uint64_t bytes = 0;
    int tmp = -1;
    int n = shared_files(&bytes, &tmp);
    assert_true(bytes <= budget);
    assert_true(n >= 4);   /* the budget was not emptied by two evictors */
    assert_int_equal(tmp, 0);
    kvstore_stats_t sa, sb;
    kvstore_stats(a, &sa);
    kvstore_stats(b, &sb);
    assert_true(sa.shared_evictions + sb.shared_evictions > 0);
    /* Both indexes agree with the directory. */
    assert_int_equal(sa.shared_bytes, bytes);
    assert_int_equal(sb.shared_bytes, bytes);
    assert_int_equal(sa.entries_shared, (size_t)n);
    assert_int_equal(sb.entries_shared, (size_t)n);
    kvstore_close(a);
    kvstore_close(b);

    /* With a grace period, nothing young is deleted, whatever the budget. */
    kvstore_t *c = open_shared(g_a, FP, budget / 8, 600000, 0);
    int32_t t[16];
    seq(t, 16, 5555555);
    insert(c, NULL, t, 16, 20000, 1);
    kvstore_flush(c);
    assert_int_equal(kvstore_shared_rescan(c), KVSTORE_OK);
    assert_int_equal(shared_files(NULL, NULL), n + 1);
    kvstore_close(c);
}

static void test_write_failure(void **state)
{
    (void)state;
    kvstore_t *a = open_shared(g_a, FP, 1 << 30, 60000, 0);
    /* The shared directory goes away under the store (an unmounted or
     * failing share, like a full one): writes there fail, softly. */
    assert_int_equal(rmdir(g_sh), 0);
    for (int i = 0; i < 3; i++) {
        int32_t t[10];
        seq(t, 10, 1 + 100 * i);
        insert(a, NULL, t, 10, 10000, (uint64_t)i);
    }
    kvstore_flush(a);
    kvstore_stats_t st;
    kvstore_stats(a, &st);
    assert_int_equal(st.shared_write_failures, 3);
    assert_int_equal(st.shared_writes, 0);
    assert_int_equal(st.disk_writes, 3);
    assert_int_equal(st.entries_shared, 0);
    int32_t t[10];
    seq(t, 10, 1);
    assert_int_equal(lookup_load(a, NULL, t, 10, 10000, 0, KVSTORE_TIER_RAM), KVSTORE_OK);
    kvstore_close(a);
}

static void test_config(void **state)
{
    (void)state;
    kvstore_config_t cfg;
    kvstore_config_default(&cfg);
    cfg.shared_dir = g_sh;   /* no disk tier */
    kvstore_t *s = NULL;
    assert_int_equal(kvstore_open(&cfg, &s), KVSTORE_EINVAL);
    assert_null(s);
    kvstore_config_default(&cfg);
    assert_int_equal(kvstore_open(&cfg, &s), KVSTORE_OK);
    assert_int_equal(kvstore_shared_rescan(s), KVSTORE_EINVAL);
    kvstore_close(s);
    assert_string_equal(kvstore_tier_name(KVSTORE_TIER_SHARED), "shared");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_written_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rescan_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_before_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_salts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
