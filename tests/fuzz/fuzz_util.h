/* fuzz_util.h — what the fuzz targets share.
 *
 * Every target is a libFuzzer program: LLVMFuzzerTestOneInput() gets one
 * input, LLVMFuzzerInitialize() (optional) runs once before the first. A
 * finding is anything that aborts the process: a sanitizer report, a
 * crash, or a broken invariant checked with FUZZ_CHECK (the documented
 * promises of the code under test: output well-formed, limits kept,
 * results independent of how input arrives). libFuzzer then writes the
 * input to its artifact prefix (scripts/fuzz: build-fuzz/findings/<target>/).
 *
 * Also the constants the KV-store target and the seed generator agree on.
 */
#ifndef KVCHAT_TESTS_FUZZ_UTIL_H
#define KVCHAT_TESTS_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The libFuzzer entry points (declared here for -Wmissing-prototypes). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Abort with a message naming the broken invariant. */
#define FUZZ_CHECK(cond, ...)                                                                  \
    do {                                                                                       \
        if (!(cond))                                                                           \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                 \
    } while (0)

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* Send the programs' log lines to /dev/null (they would slow the fuzzer
 * and bury its report). */
void fuzz_quiet_logs(void);

/* An anonymous in-memory file (memfd). Aborts on failure. */
int fuzz_memfd(const char *name);

/* Make the memfd hold exactly data[0..size), offset 0. Aborts on failure. */
void fuzz_memfd_set(int fd, const uint8_t *data, size_t size);

/* Descriptor leak check around the code under test: any descriptor it
 * leaves open takes the lowest free number, so the number changes.
 * (Between inputs libFuzzer itself may open some, for its symbolizer.)
 * Use only where that code runs on the calling thread alone. */
int fuzz_fds_mark(void);
void fuzz_fds_check(int mark);

/* Every byte of s[0..n) is text the extract sink may produce: well-formed
 * UTF-8 without NUL, without controls other than '\n' and '\t', and
 * without what the sink turns into something else (C1 controls, NBSP, soft
 * hyphen, U+FEFF, U+2028, U+2029). */
bool fuzz_clean_text(const char *s, size_t n);

/* ---- zip formats as XML parts (fuzz_extract.c, seeds.c) --------------- */

/* An input of the docx, odt and epub targets that does not start with
 * "PK" is up to FUZZ_PARTS_MAX XML entries separated by this marker. */
#define FUZZ_PART_SPLIT "\n--part--\n"
#define FUZZ_PARTS_MAX 6

/* ---- KV-store entry files (fuzz_kvstore.c, seeds.c) ------------------- */

#define FUZZ_KV_FINGERPRINT 0x6b7663686174667aull /* "kvchatfz" */
#define FUZZ_KV_LAYOUT "k=f16 v=f16 fa=1 unified=0 seqs=4 ctx=4096"
/* An input is one flags byte, then up to FUZZ_KV_FILES entry files
 * separated by this marker. */
#define FUZZ_KV_SPLIT "\n--kvfile--\n"
#define FUZZ_KV_FILES 4
enum {
    FUZZ_KV_FIX_HSUM = 1 << 0,  /* recompute the header checksum */
    FUZZ_KV_FIX_BSUM = 1 << 1,  /* recompute the blob checksum */
    FUZZ_KV_SMALL_DISK = 1 << 2, /* a disk budget below the files' total */
    FUZZ_KV_SMALL_RAM = 1 << 3, /* a RAM budget of 64 bytes */
    FUZZ_KV_PIN = 1 << 4,       /* toggle the pinned flag of the first entry */
    FUZZ_KV_DELETE = 1 << 5,    /* delete the last entry */
};

#endif
