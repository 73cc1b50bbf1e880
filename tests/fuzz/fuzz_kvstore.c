/* fuzz_kvstore.c — KV-cache entry files as kvchat-engine --resume finds
 * them (engine/kvstore.c: the directory scan, header and token checks,
 * then blob loads of what was indexed).
 *
 * No model is needed: the store never interprets blobs, and the model's
 * fingerprint and context layout are plain values (FUZZ_KV_FINGERPRINT,
 * FUZZ_KV_LAYOUT, which the seed generator's files carry too).
 *
 * Input: one flags byte (FUZZ_KV_* in fuzz_util.h), then up to
 * FUZZ_KV_FILES entry files separated by FUZZ_KV_SPLIT. The checksums of a
 * file can be recomputed before it is written (flags), so that mutated
 * headers and tokens get past them and reach the code behind. Per input:
 * the files go into an empty directory, a store opens it (KVSTORE_RESUME),
 * every indexed entry is looked up by its tokens and loaded, an entry may
 * be pinned or deleted, the store closes, the directory is emptied.
 *
 * Checked besides memory safety: only files that are valid by the format
 * in kvstore.c's header comment are indexed (checked here independently;
 * format versions 3 and 2, the one before salts), with their tokens and in
 * the namespace of their salt hash (none for version 2); when every file is
 * valid, their (namespace, tokens) pairs differ and the disk budget holds
 * them all, all of them are indexed; every entry a lookup returns, whole
 * or in part, belongs to the namespace looked in (the entry's own, and
 * another); a loaded blob has the size its header gives, and a load fails
 * only as KVSTORE_ECORRUPT when the blob checksum is wrong; a loaded
 * disk-only entry stays out of RAM; the disk budget holds after open
 * unless entries are pinned.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/kvstore.h"
#include "fuzz_util.h"

#define HEAD 24u  /* magic, version, fingerprint, layout length */
#define FLAG_PINNED 1u
#define FLAG_DISK 2u   /* disk only: loads are not promoted into RAM */
#define FLAG_SALTED 4u /* version 3: the salt hash is set */
#define VERSION_V2 2u  /* before salts: still loaded, without a salt */
/* n, B, created, flags, reserved, header and blob checksums; version 3
 * then the salt hash (SALT_AT) */
#define TAIL_V2 48u
#define SALT_AT 48u
#define TAIL (SALT_AT + KVSTORE_SALT_LEN)

static char g_dir[256];

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                                (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* The parts of an entry file, if its sizes add up; else false. A file of
 * any version but 2 is taken to have the current header's size. */
typedef struct {
    uint32_t L, version;
    uint64_t hl, n, bytes;
} layout_t;

static bool file_layout(const uint8_t *f, size_t len, layout_t *l)
{
    if (len < HEAD)
        return false;
    l->L = rd32(f + 20);
    l->version = rd32(f + 8);
    l->hl = HEAD + (uint64_t)l->L + (l->version == VERSION_V2 ? TAIL_V2 : TAIL);
    if (l->L > 1024 || len < l->hl)
        return false;
    l->n = rd64(f + HEAD + l->L);
    l->bytes = rd64(f + HEAD + l->L + 8);
    if (l->n > (1u << 24) || l->bytes > ((uint64_t)1 << 48))
        return false;
    return l->hl + l->n * 4 + l->bytes == len;
}

static uint64_t header_sum(const uint8_t *f, const layout_t *l)
{
    uint8_t zeroed[HEAD + 1024 + TAIL];
    memcpy(zeroed, f, l->hl);
    wr64(zeroed + HEAD + l->L + 32, 0);
    return kvstore_checksum(f + l->hl, l->n * 4, kvstore_checksum(zeroed, l->hl, 0));
}

static uint64_t blob_sum(const uint8_t *f, const layout_t *l)
{
    return kvstore_checksum(f + l->hl + l->n * 4, l->bytes, 0);
}

/* The namespace a file's header names (whatever its validity): its salt
 * hash when it is of version 3 with the salted flag, else none. */
static kvstore_salt_t file_salt(const uint8_t *f, const layout_t *l)
{
    kvstore_salt_t k = { .salted = false };
    if (l->version == KVSTORE_FORMAT_VERSION && (rd32(f + HEAD + l->L + 24) & FLAG_SALTED)) {
        k.salted = true;
        memcpy(k.hash, f + HEAD + l->L + SALT_AT, KVSTORE_SALT_LEN);
    }
    return k;
}

/* Valid for this store by the format description (blob checksum aside,
 * which is checked on load): the current format version with pinned,
 * disk-only and salted the only flags and a zero salt hash unless salted,
 * or version 2 with pinned and disk-only the only flags. */
static bool spec_valid(const uint8_t *f, size_t len)
{
    static const uint8_t zero[KVSTORE_SALT_LEN];
    layout_t l;
    size_t lay = strlen(FUZZ_KV_LAYOUT);
    if (!file_layout(f, len, &l))
        return false;
    uint32_t flags = rd32(f + HEAD + l.L + 24);
    bool v3 = l.version == KVSTORE_FORMAT_VERSION;
    uint32_t known = FLAG_PINNED | FLAG_DISK | (v3 ? FLAG_SALTED : 0);
    if (v3 && !(flags & FLAG_SALTED) && memcmp(f + HEAD + l.L + SALT_AT, zero, sizeof zero) != 0)
        return false;
    return memcmp(f, "KVCHATKV", 8) == 0 && (v3 || l.version == VERSION_V2) &&
           rd64(f + 12) == FUZZ_KV_FINGERPRINT && l.L == lay &&
           memcmp(f + HEAD, FUZZ_KV_LAYOUT, lay) == 0 && l.n >= 1 && l.bytes >= 1 &&
           (flags & ~known) == 0 && rd32(f + HEAD + l.L + 28) == 0 &&
           rd64(f + HEAD + l.L + 32) == header_sum(f, &l);
}

static void empty_dir(void)
{
    DIR *d = opendir(g_dir);
    FUZZ_CHECK(d != NULL, "cannot list %s", g_dir);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

static void remove_dir(void)
{
    empty_dir();
    rmdir(g_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet_logs();
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/kvchat-fuzz-kvstore-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    FUZZ_CHECK(mkdtemp(g_dir) != NULL, "mkdtemp %s: %s", g_dir, strerror(errno));
    atexit(remove_dir);
    return 0;
}

typedef struct {
    const uint8_t *data;
    size_t len;
    char id[KVSTORE_ID_LEN + 1];
    bool valid;
} part_t;

typedef struct {
    int32_t *tokens[FUZZ_KV_FILES];
    int n[FUZZ_KV_FILES];
    kvstore_salt_t salt[FUZZ_KV_FILES];   /* the namespace it was found in */
    kvstore_salt_t walking;               /* the namespace being walked */
    int count;
    bool overflow;
} seqs_t;

static int collect(const int32_t *tokens, int n, void *ud)
{
    seqs_t *s = ud;
    if (s->count == FUZZ_KV_FILES) {
        s->overflow = true;
        return 1;
    }
    s->tokens[s->count] = malloc((size_t)n * sizeof *tokens);
    FUZZ_CHECK(s->tokens[s->count] != NULL, "out of memory");
    memcpy(s->tokens[s->count], tokens, (size_t)n * sizeof *tokens);
    s->salt[s->count] = s->walking;
    s->n[s->count++] = n;
    return 0;
}

/* Every entry a lookup of toks[0..n) in `salt` returns is of that salt's
 * namespace. */
static void check_lookup_namespace(kvstore_t *s, const kvstore_salt_t *salt, const int32_t *toks,
                                   int n)
{
    kvstore_match_t m;
    int rc = kvstore_lookup_salted(s, salt, toks, n, &m);
    FUZZ_CHECK(rc == KVSTORE_OK, "kvstore_lookup_salted: %d", rc);
    kvstore_handle_t *hs[2] = { m.full, m.partial };
    for (int k = 0; k < 2; k++) {
        if (!hs[k])
            continue;
        kvstore_entry_info_t info;
        kvstore_handle_info(s, hs[k], &info);
        FUZZ_CHECK(kvstore_salt_equal(&info.salt, salt),
                   "a lookup returned entry %s of another namespace", info.id);
    }
    kvstore_match_release(s, &m);
}

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    FUZZ_CHECK(fd >= 0, "cannot create %s", path);
    FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n, "cannot write %s", path);
    close(fd);
}

/* The part written under this id, or NULL. */
static part_t *part_named(part_t *parts, int np, const char *id)
{
    for (int i = 0; i < np; i++)
        if (strcmp(parts[i].id, id) == 0)
            return &parts[i];
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int fds = fuzz_fds_mark();
    unsigned flags = data[0];
    const uint8_t *p = data + 1, *end = data + size;
    const size_t sl = strlen(FUZZ_KV_SPLIT);

    /* Split, fix up and write the files. */
    part_t parts[FUZZ_KV_FILES];
    uint8_t *copies[FUZZ_KV_FILES] = { 0 };
    int np = 0;
    uint64_t total = 0;
    while (np < FUZZ_KV_FILES) {
        const uint8_t *q = np + 1 < FUZZ_KV_FILES
                               ? memmem(p, (size_t)(end - p), FUZZ_KV_SPLIT, sl) : NULL;
        size_t len = q ? (size_t)(q - p) : (size_t)(end - p);
        uint8_t *f = malloc(len ? len : 1);
        FUZZ_CHECK(f != NULL, "out of memory");
        memcpy(f, p, len);
        layout_t l;
        if (file_layout(f, len, &l)) {
            if (flags & FUZZ_KV_FIX_HSUM)
                wr64(f + HEAD + l.L + 32, header_sum(f, &l));
            if (flags & FUZZ_KV_FIX_BSUM)
                wr64(f + HEAD + l.L + 40, blob_sum(f, &l));
        }
        copies[np] = f;
        parts[np].data = f;
        parts[np].len = len;
        parts[np].valid = spec_valid(f, len);
        snprintf(parts[np].id, sizeof parts[np].id, "%016x", 0xf0 + np);
        char name[64];
        snprintf(name, sizeof name, "%s.kv", parts[np].id);
        write_file(name, f, len);
        total += len;
        np++;
        if (!q)
            break;
        p = q + sl;
    }

    kvstore_config_t cfg;
    kvstore_config_default(&cfg);
    cfg.dir = g_dir;
    cfg.fingerprint = FUZZ_KV_FINGERPRINT;
    cfg.layout = FUZZ_KV_LAYOUT;
    cfg.mode = KVSTORE_RESUME;
    cfg.ram_budget = (flags & FUZZ_KV_SMALL_RAM) ? 64 : (uint64_t)64 << 20;
    cfg.disk_budget = (uint64_t)1 << 30;
    if (flags & FUZZ_KV_SMALL_DISK)
        cfg.disk_budget = total / 2 ? total / 2 : 1;
    kvstore_t *s = NULL;
    int rc = kvstore_open(&cfg, &s);
    FUZZ_CHECK(rc == KVSTORE_OK, "kvstore_open: %s", kvstore_strerror(rc));

    /* Every entry, walking each namespace a file names (and none): an
     * entry of a namespace no file names would be missed here, and found
     * by the count check below. */
    seqs_t seqs = { .count = 0 };
    kvstore_salt_t spaces[FUZZ_KV_FILES + 1] = { { .salted = false } };
    int n_spaces = 1;
    for (int i = 0; i < np; i++) {
        layout_t l;
        if (!file_layout(parts[i].data, parts[i].len, &l))
            continue;
        kvstore_salt_t k = file_salt(parts[i].data, &l);
        bool seen = false;
        for (int j = 0; j < n_spaces; j++)
            seen |= kvstore_salt_equal(&spaces[j], &k);
        if (!seen)
            spaces[n_spaces++] = k;
    }
    for (int j = 0; j < n_spaces && !seqs.overflow; j++) {
        seqs.walking = spaces[j];
        rc = kvstore_foreach_extending_salted(s, &spaces[j], NULL, 0, collect, &seqs);
        FUZZ_CHECK(rc == KVSTORE_OK || seqs.overflow, "kvstore_foreach_extending_salted: %d", rc);
    }
    FUZZ_CHECK(!seqs.overflow, "more entries than files");

    /* Indexed => valid. All valid, distinct, within budget => all indexed. */
    bool all_valid = true, distinct = true;
    for (int i = 0; i < np; i++)
        all_valid &= parts[i].valid;
    for (int i = 0; i < np && all_valid; i++)
        for (int j = 0; j < i; j++) {
            layout_t a, b;
            file_layout(parts[i].data, parts[i].len, &a);
            file_layout(parts[j].data, parts[j].len, &b);
            kvstore_salt_t sa = file_salt(parts[i].data, &a), sb = file_salt(parts[j].data, &b);
            if (a.n == b.n && kvstore_salt_equal(&sa, &sb) &&
                !memcmp(parts[i].data + a.hl, parts[j].data + b.hl, a.n * 4))
                distinct = false;
        }
    if (all_valid && distinct && !(flags & FUZZ_KV_SMALL_DISK))
        FUZZ_CHECK(seqs.count == np, "%d valid files, %d indexed", np, seqs.count);

    kvstore_entry_info_t first = { .id = "" }, last = { .id = "" };
    bool any_pinned = false;
    for (int i = 0; i < seqs.count; i++) {
        /* Looked up in its own namespace and in another one. */
        kvstore_salt_t other = seqs.salt[i];
        if (other.salted)
            other.hash[0] ^= 1;
        else
            other.salted = true;
        check_lookup_namespace(s, &other, seqs.tokens[i], seqs.n[i]);
        check_lookup_namespace(s, &seqs.salt[i], seqs.tokens[i], seqs.n[i]);
        kvstore_match_t m;
        rc = kvstore_lookup_salted(s, &seqs.salt[i], seqs.tokens[i], seqs.n[i], &m);
        FUZZ_CHECK(rc == KVSTORE_OK && m.full && m.full_len == seqs.n[i],
                   "lookup of an indexed entry: rc %d, full_len %d of %d", rc, m.full_len,
                   seqs.n[i]);
        kvstore_entry_info_t info;
        kvstore_handle_info(s, m.full, &info);
        part_t *pt = part_named(parts, np, info.id);
        FUZZ_CHECK(pt != NULL && pt->valid, "entry %s indexed from an invalid or unknown file",
                   info.id);
        layout_t l;
        file_layout(pt->data, pt->len, &l);
        FUZZ_CHECK(l.n == (uint64_t)seqs.n[i] &&
                       !memcmp(pt->data + l.hl, seqs.tokens[i], (size_t)seqs.n[i] * 4),
                   "entry %s has other tokens than its file", info.id);
        kvstore_salt_t fs = file_salt(pt->data, &l);
        FUZZ_CHECK(kvstore_salt_equal(&info.salt, &fs) && kvstore_salt_equal(&fs, &seqs.salt[i]),
                   "entry %s is in another namespace than its file names", info.id);
        uint8_t fl = pt->data[HEAD + l.L + 24];
        FUZZ_CHECK(info.bytes == l.bytes && info.pinned == ((fl & FLAG_PINNED) != 0) &&
                       info.disk_only == ((fl & FLAG_DISK) != 0),
                   "entry %s: size, pinned or disk-only flag differ from its file", info.id);
        any_pinned |= info.pinned;
        const void *blob = NULL;
        size_t blen = 0;
        rc = kvstore_load(s, m.full, &blob, &blen);
        bool sum_ok = rd64(pt->data + HEAD + l.L + 40) == blob_sum(pt->data, &l);
        if (rc == KVSTORE_OK) {
            FUZZ_CHECK(sum_ok, "a blob with a wrong checksum was loaded");
            if (info.disk_only) {
                kvstore_entry_info_t now;
                kvstore_handle_info(s, m.full, &now);
                FUZZ_CHECK(now.tier == KVSTORE_TIER_DISK, "a disk-only entry went to RAM");
            }
            FUZZ_CHECK(blen == l.bytes && !memcmp(blob, pt->data + l.hl + l.n * 4, blen),
                       "loaded %zu bytes, the file holds %llu", blen,
                       (unsigned long long)l.bytes);
        } else {
            FUZZ_CHECK(rc == KVSTORE_ECORRUPT && !sum_ok, "load failed: %s",
                       kvstore_strerror(rc));
        }
        kvstore_match_release(s, &m);
        if (i == 0)
            first = info;
        last = info;
    }
    kvstore_stats_t st;
    kvstore_stats(s, &st);
    FUZZ_CHECK(st.entries <= (size_t)seqs.count, "%zu entries, %d indexed", st.entries,
               seqs.count);
    if (!any_pinned)
        FUZZ_CHECK(st.disk_bytes <= st.disk_budget, "%llu bytes on disk, budget %llu",
                   (unsigned long long)st.disk_bytes, (unsigned long long)st.disk_budget);
    kvstore_entry_info_t *list = NULL;
    size_t nlist = 0;
    FUZZ_CHECK(kvstore_list(s, &list, &nlist) == KVSTORE_OK, "kvstore_list");
    free(list);
    if ((flags & FUZZ_KV_PIN) && first.id[0])
        kvstore_set_pinned(s, first.id, !first.pinned);
    if ((flags & FUZZ_KV_DELETE) && last.id[0]) {
        rc = kvstore_delete(s, last.id);   /* gone already when its load failed */
        FUZZ_CHECK(rc == KVSTORE_OK || rc == KVSTORE_ENOTFOUND, "kvstore_delete: %d", rc);
    }
    kvstore_close(s);

    for (int i = 0; i < seqs.count; i++)
        free(seqs.tokens[i]);
    for (int i = 0; i < np; i++)
        free(copies[i]);
    empty_dir();
    fuzz_fds_check(fds);
    return 0;
}
