/* bench_restore.c — the restore primitive alone: KV snapshot into a slot
 * against memcpy of the same bytes, and a restore from the disk tier
 * against read() of the same file, in one process.
 *
 * The engine's context layout as kvchat-bench runs it (4 slots, 32768
 * cells, f16 KV, flash attention); a document-sized prompt of N tokens is
 * prefilled once and saved; then, like questions alternating across
 * documents, each round waits, restores one of five saved snapshots into
 * the next slot (model_seq_state_set, the engine's own restore path) and
 * copies another snapshot's bytes between two buffers left idle as long
 * (memcpy). Every buffer holds distinct data (no page of repeated bytes
 * that a hypervisor might merge) and sits on huge pages where the system
 * has them, as the engine's do (hugemem.h). Prints the medians and their
 * ratio.
 *
 * The disk tier: the same snapshot is saved five times (five token
 * sequences) as entry files of a kvstore on disk, the files are read once
 * into the page cache, then each round waits, restores one entry into the
 * next slot by the engine's own path (kvstore_lookup, kvstore_load: read or
 * map, checksum; model_seq_state_set: copy into the slot) and reads another
 * entry's whole file with plain read() calls into a buffer of the same
 * kind (huge pages, left idle as long). Twice: with a RAM budget below the
 * snapshot (no load is kept in RAM: disk-only entries load this way), and
 * with one of one and a half snapshots (every load is kept in RAM and
 * evicts the one before, as in a full RAM tier). Prints the medians and
 * their ratio (target >= 0.5), and the throughput of the entry files'
 * checksum (kvstore_checksum) over the snapshot.
 *
 * Usage: kvchat-bench-restore --model PATH [--tokens N] [--rounds N]
 *                             [--threads N] [--dir DIR] [--out FILE (appends)]
 * --dir: where the disk-tier entries go (a new directory made inside it and
 * removed at the end; default $TMPDIR or /tmp).
 */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_util.h"
#include "common/log.h"
#include "engine/hugemem.h"
#include "engine/kvstore.h"
#include "engine/model.h"

static void die(const char *msg)
{
    fprintf(stderr, "kvchat-bench-restore: %s\n", msg);
    exit(1);
}

enum { SNAPS = 5, SLOTS = 4, MAX_ROUNDS = 64 };

/* Print a result line, and append it to `out` when given. */
static void emit(const char *out, const char *line)
{
    fputs(line, stdout);
    if (!out)
        return;
    FILE *f = fopen(out, "a");
    if (!f)
        die("cannot append to the output file");
    fputs(line, f);
    fclose(f);
}

/* Read the whole file at path into buf (cap bytes at least its size) with
 * plain read() calls; returns the bytes read. */
static size_t read_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die("cannot open an entry file");
    size_t done = 0;
    for (;;) {
        ssize_t got = read(fd, buf + done, cap - done);
        if (got < 0)
            die("cannot read an entry file");
        if (got == 0)
            break;
        done += (size_t)got;
        if (done == cap)
            break;
    }
    close(fd);
    return done;
}

/* Remove dir and the files in it (the store's entries and lock file). */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
    rmdir(dir);
}

/* The disk-tier measurement: the snapshot saved as SNAPS entry files (one
 * per token sequence, keys[i][0] differing) in a new directory under
 * dir_in, read once into the page cache; then each round waits, loads the
 * next entry from disk and restores it into the next slot (the engine's
 * path: kvstore_lookup, kvstore_load, model_seq_state_set), and reads
 * another entry's whole file into an idle buffer of its own with read().
 * `promote`: a RAM budget of one and a half snapshots, so every load is
 * kept in RAM and evicts the one before (else 1 MiB: none is kept).
 * Writes the medians; returns the file size. Dies on any failure. */
static size_t disk_rounds(model_ctx_t *c, model_t *m, void *const *snap, size_t len,
                          const model_token_t *toks, int n_tokens, int rounds, int promote,
                          const char *dir_in, double *d_ms, double *p_ms)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/kvchat-bench-restore-XXXXXX", dir_in);
    if (!mkdtemp(dir))
        die("cannot make a directory for the disk tier (--dir)");
    kvstore_config_t kc;
    kvstore_config_default(&kc);
    kc.ram_budget = promote ? len + len / 2 : 1 << 20;
    kc.disk_budget = (uint64_t)SNAPS * (len + (size_t)n_tokens * 4 + 4096) + (1 << 20);
    kc.dir = dir;
    kc.fingerprint = model_info(m)->fingerprint;
    kc.layout = model_ctx_layout(c);
    kc.mode = KVSTORE_RESET;
    kvstore_t *store;
    if (kvstore_open(&kc, &store) != KVSTORE_OK)
        die("cannot open the disk tier");
    char ids[SNAPS][KVSTORE_ID_LEN + 1], path[SNAPS][600];
    model_token_t *keys[SNAPS];
    char *rbuf[SNAPS];
    for (int i = 0; i < SNAPS; i++) {
        keys[i] = malloc((size_t)n_tokens * sizeof *keys[i]);
        void *copy = hugemem_alloc(len);
        if (!keys[i] || !copy)
            die("out of memory");
        memcpy(keys[i], toks, (size_t)n_tokens * sizeof *toks);
        keys[i][0] = (model_token_t)(10 + i);
        memcpy(copy, snap[i], len);
        if (kvstore_insert(store, keys[i], n_tokens, copy, len, false, ids[i]) != KVSTORE_OK)
            die("cannot store the snapshot");
        snprintf(path[i], sizeof path[i], "%s/%s.kv", dir, ids[i]);
        kvstore_flush(store);   /* written, fsync'd: the file is in the page cache */
    }
    kvstore_stats_t ks;
    kvstore_stats(store, &ks);
    if (ks.entries_disk != SNAPS)
        die("the entries did not go to the disk tier");
    struct stat st;
    if (stat(path[0], &st) != 0)
        die("cannot find an entry file");
    size_t file_len = (size_t)st.st_size;
    for (int i = 0; i < SNAPS; i++) {
        if (!(rbuf[i] = hugemem_alloc(file_len)))
            die("out of memory");
        bench_fill_unique(rbuf[i], file_len, 0x165667B19E3779F9ull * (uint64_t)(i + 1));
        if (read_file(path[i], rbuf[i], file_len) != file_len)   /* warm the page cache */
            die("short read of an entry file");
    }

    double dt[MAX_ROUNDS + SNAPS], pt[MAX_ROUNDS + SNAPS];
    for (int r = -SNAPS; r < rounds; r++) {
        int k = r + SNAPS;
        usleep(1300 * 1000);
        double t0 = bench_now_ms();
        kvstore_match_t hit;
        const void *blob;
        size_t blen;
        if (kvstore_lookup(store, keys[k % SNAPS], n_tokens, &hit) != KVSTORE_OK || !hit.full ||
            hit.full_tier != KVSTORE_TIER_DISK)
            die("the entry is not on the disk tier");
        if (kvstore_load(store, hit.full, &blob, &blen) != KVSTORE_OK || blen != len)
            die("cannot load the entry from disk");
        if (model_seq_state_set(c, k % SLOTS, blob, blen) != MODEL_OK)
            die("cannot restore the state");
        kvstore_match_release(store, &hit);
        double t1 = bench_now_ms();
        kvstore_flush(store);   /* the writer's copy into RAM does not overlap the read() */
        double t2 = bench_now_ms();
        if (read_file(path[(k + 2) % SNAPS], rbuf[(k + 2) % SNAPS], file_len) != file_len)
            die("short read of an entry file");
        double t3 = bench_now_ms();
        dt[k] = t1 - t0;
        pt[k] = t3 - t2;
        fprintf(stderr, "  %s %2d slot %d: disk restore (%s) %.2f ms, read() %.2f ms\n",
                r < 0 ? "warm-up" : "round", r < 0 ? k + 1 : r + 1, k % SLOTS,
                promote ? "kept in RAM" : "not kept", dt[k], pt[k]);
    }
    kvstore_stats(store, &ks);
    if (ks.hits_disk != (uint64_t)(rounds + SNAPS) || (!promote && ks.ram_bytes != 0) ||
        (promote && ks.ram_bytes != len))
        die("a load did not come from disk");
    *d_ms = bench_median(dt + SNAPS, rounds);
    *p_ms = bench_median(pt + SNAPS, rounds);
    kvstore_close(store);
    remove_dir(dir);
    for (int i = 0; i < SNAPS; i++) {
        free(keys[i]);
        free(rbuf[i]);
    }
    return file_len;
}

int main(int argc, char **argv)
{
    hugemem_exec_advised(argv);   /* as kvchat-engine does */
    log_set_level(LOG_WARN);
    const char *model_path = NULL, *out = NULL, *dir_in = getenv("TMPDIR");
    int n_tokens = 2349, rounds = 15, threads = 2;
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },  { "tokens", required_argument, NULL, 'n' },
        { "rounds", required_argument, NULL, 'r' }, { "threads", required_argument, NULL, 't' },
        { "out", required_argument, NULL, 'o' },    { "dir", required_argument, NULL, 'd' },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "m:n:r:t:o:d:", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model_path = optarg; break;
        case 'n': n_tokens = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'o': out = optarg; break;
        case 'd': dir_in = optarg; break;
        default: die("usage: --model PATH [--tokens N] [--rounds N] [--threads N] [--dir DIR] "
                     "[--out FILE]");
        }
    }
    if (!model_path || n_tokens < 16 || rounds < 1 || rounds > MAX_ROUNDS || threads < 1)
        die("usage: --model PATH [--tokens N>=16] [--rounds 1..64] [--threads N] [--dir DIR] "
            "[--out FILE]");

    model_backend_init(false);
    model_t *m;
    if (model_open(model_path, false, &m) != MODEL_OK)
        die("cannot load the model");
    model_ctx_params_t cp;
    model_ctx_params_default(&cp);
    cp.n_ctx = 32768;
    cp.n_seq = SLOTS;
    cp.n_batch = 512;
    cp.n_threads = threads;
    model_ctx_t *c;
    if (model_ctx_new(m, &cp, &c) != MODEL_OK)
        die("cannot create the context");

    /* prefill the prompt into slot 0 (token ids spread over the vocabulary) */
    int n_vocab = model_info(m)->n_vocab;
    model_batch_t *b = model_batch_new(512);
    model_token_t *toks = malloc((size_t)n_tokens * sizeof *toks);
    if (!toks)
        die("out of memory");
    for (int p = 0; p < n_tokens; p++)
        toks[p] = (model_token_t)(100 + (p * 7919) % (n_vocab - 200));
    for (int p = 0; p < n_tokens;) {
        model_batch_clear(b);
        for (int k = 0; k < 512 && p < n_tokens; k++, p++)
            model_batch_add(b, toks[p], p, 0, p == n_tokens - 1);
        if (model_decode(c, b) != MODEL_OK)
            die("decode failed");
    }
    size_t size = model_seq_state_size(c, 0), len = 0;
    void *snap[SNAPS];
    for (int i = 0; i < SNAPS; i++) {
        /* the engine's RAM-tier allocation; each its own copy */
        if (!(snap[i] = hugemem_alloc(size)) ||
            model_seq_state_get(c, 0, snap[i], size, &len) != MODEL_OK)
            die("cannot save the state");
    }
    /* every slot holds real data before the first measured round */
    for (int s = 1; s < SLOTS; s++)
        if (model_seq_state_set(c, s, snap[s], len) != MODEL_OK)
            die("cannot restore the state");
    char *src[SNAPS], *dst[SNAPS];
    for (int i = 0; i < SNAPS; i++) {
        /* allocated as the snapshots are (the RAM tier's allocator) */
        if (!(src[i] = hugemem_alloc(len)) || !(dst[i] = hugemem_alloc(len)))
            die("out of memory");
        bench_fill_unique(src[i], len, 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1));
        bench_fill_unique(dst[i], len, 0xC2B2AE3D27D4EB4Full * (uint64_t)(i + 1));
    }

    /* One unmeasured cycle first: every buffer and slot is then in the
     * state the measured rounds see (last touched a few rounds ago). */
    double rt[MAX_ROUNDS + SNAPS], mt[MAX_ROUNDS + SNAPS];
    for (int r = -SNAPS; r < rounds; r++) {
        int k = r + SNAPS;   /* rounds counted from the warm-up's start */
        usleep(1300 * 1000);
        double t0 = bench_now_ms();
        if (model_seq_state_set(c, k % SLOTS, snap[k % SNAPS], len) != MODEL_OK)
            die("cannot restore the state");
        double t1 = bench_now_ms();
        memcpy(dst[k % SNAPS], src[(k + 2) % SNAPS], len);
        double t2 = bench_now_ms();
        src[(k + 2) % SNAPS][0] ^= dst[k % SNAPS][len - 1];   /* keep the copy observable */
        rt[k] = t1 - t0;
        mt[k] = t2 - t1;
        fprintf(stderr, "  %s %2d slot %d: restore %.2f ms, memcpy %.2f ms\n", r < 0 ? "warm-up" : "round",
                r < 0 ? k + 1 : r + 1, k % SLOTS, rt[k], mt[k]);
    }
    double r_ms = bench_median(rt + SNAPS, rounds), m_ms = bench_median(mt + SNAPS, rounds);
    char line[1024];
    snprintf(line, sizeof line,
             "- restore primitive alone (kvchat-bench-restore: the engine's restore path into the same "
             "context layout, one process, no server): %d-token snapshot of %.1f MB restored into a "
             "slot in %.2f ms (%.2f GB/s, median of %d rounds 1.3 s apart after a warm-up cycle, slots in turn) against memcpy "
             "of the same bytes between idle buffers in %.2f ms (%.2f GB/s): %.2f of memcpy (target >= 0.5).\n",
             n_tokens, (double)len / 1e6, r_ms, (double)len / r_ms / 1e6, rounds, m_ms,
             (double)len / m_ms / 1e6, m_ms / r_ms);
    emit(out, line);

    /* The entry files' checksum over the snapshot, back to back. */
    double ct[MAX_ROUNDS];
    uint64_t acc = 0;
    for (int r = 0; r < rounds; r++) {
        double t0 = bench_now_ms();
        acc ^= kvstore_checksum(snap[r % SNAPS], len, (uint64_t)r);
        ct[r] = bench_now_ms() - t0;
    }
    double c_ms = bench_median(ct, rounds);

    /* The disk tier, both ways an entry is loaded from it. */
    static const char *const how[2] = {
        "not kept in RAM (a disk-only entry, or one over the RAM budget)",
        "kept in RAM (the RAM tier full: each load is then copied into RAM by the store's "
        "writer, evicting the one before, after the measured restore)",
    };
    for (int promote = 0; promote < 2; promote++) {
        double d_ms, p_ms;
        size_t file_len = disk_rounds(c, m, snap, len, toks, n_tokens, rounds, promote,
                                      dir_in && *dir_in ? dir_in : "/tmp", &d_ms, &p_ms);
        snprintf(line, sizeof line,
                 "- restore from the disk tier, %s (kvchat-bench-restore, the same snapshot as an "
                 "entry file of %.1f MB in the page cache): kvstore_load and the copy into a slot in "
                 "%.2f ms (%.2f GB/s, median of %d rounds 1.3 s apart after a warm-up cycle) against "
                 "read() of the same file into an idle buffer on huge pages in %.2f ms (%.2f GB/s): "
                 "%.2f of read() (target >= 0.5).\n",
                 how[promote], (double)file_len / 1e6, d_ms, (double)len / d_ms / 1e6, rounds, p_ms,
                 (double)file_len / p_ms / 1e6, p_ms / d_ms);
        emit(out, line);
    }
    snprintf(line, sizeof line,
             "- entry checksum (kvstore_checksum, XXH3-64) over the %.1f MB snapshot: %.2f GB/s "
             "(median of %d, back to back; %04x).\n",
             (double)len / 1e6, (double)len / c_ms / 1e6, rounds, (unsigned)(acc & 0xffff));
    emit(out, line);
    for (int i = 0; i < SNAPS; i++) {
        free(snap[i]);
        free(src[i]);
        free(dst[i]);
    }
    free(toks);
    model_batch_free(b);
    model_ctx_free(c);
    model_close(m);
    return 0;
}
