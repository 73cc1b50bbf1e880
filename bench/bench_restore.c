/* bench_restore.c — the restore primitive alone: KV snapshot into a slot
 * against memcpy of the same bytes, in one process.
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
 * Usage: kvchat-bench-restore --model PATH [--tokens N] [--rounds N]
 *                             [--threads N] [--out FILE (appends)]
 */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_util.h"
#include "engine/hugemem.h"
#include "engine/model.h"

static void die(const char *msg)
{
    fprintf(stderr, "kvchat-bench-restore: %s\n", msg);
    exit(1);
}

enum { SNAPS = 5, SLOTS = 4, MAX_ROUNDS = 64 };

int main(int argc, char **argv)
{
    hugemem_exec_advised(argv);   /* as kvchat-engine does */
    const char *model_path = NULL, *out = NULL;
    int n_tokens = 2349, rounds = 15, threads = 2;
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },  { "tokens", required_argument, NULL, 'n' },
        { "rounds", required_argument, NULL, 'r' }, { "threads", required_argument, NULL, 't' },
        { "out", required_argument, NULL, 'o' },    { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "m:n:r:t:o:", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': model_path = optarg; break;
        case 'n': n_tokens = atoi(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 't': threads = atoi(optarg); break;
        case 'o': out = optarg; break;
        default: die("usage: --model PATH [--tokens N] [--rounds N] [--threads N] [--out FILE]");
        }
    }
    if (!model_path || n_tokens < 16 || rounds < 1 || rounds > MAX_ROUNDS || threads < 1)
        die("usage: --model PATH [--tokens N>=16] [--rounds 1..64] [--threads N] [--out FILE]");

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
    for (int p = 0; p < n_tokens;) {
        model_batch_clear(b);
        for (int k = 0; k < 512 && p < n_tokens; k++, p++)
            model_batch_add(b, (model_token_t)(100 + (p * 7919) % (n_vocab - 200)), p, 0,
                            p == n_tokens - 1);
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
    fputs(line, stdout);
    if (out) {
        FILE *f = fopen(out, "a");
        if (!f)
            die("cannot append to the output file");
        fputs(line, f);
        fclose(f);
    }
    for (int i = 0; i < SNAPS; i++) {
        free(snap[i]);
        free(src[i]);
        free(dst[i]);
    }
    model_batch_free(b);
    model_ctx_free(c);
    model_close(m);
    return 0;
}
