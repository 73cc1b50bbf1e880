/* hugemem.h — large buffers on transparent huge pages.
 *
 * The engine's big buffers (the KV cache, the weights when read into
 * memory, the compute buffers, the RAM tier's snapshots) are copied and
 * scanned as a whole. Backed by 4 KiB pages, every page is a translation of
 * its own; in a virtual machine whose host tracks guest memory page by page,
 * writing pages that sat idle for a second can cost ten times the copy
 * itself (measured here: 29 MB into idle 4 KiB pages 4-43 ms, into idle
 * huge pages 2 ms, alternating, same process). Huge pages (2 MiB) make that
 * 512 times rarer.
 *
 * Two ways in:
 *  - hugemem_alloc() for buffers we allocate ourselves: 2 MiB aligned and
 *    advised (MADV_HUGEPAGE) before the first touch;
 *  - hugemem_exec_advised() for buffers llama.cpp allocates (through
 *    posix_memalign, beyond our reach): the C library advises every large
 *    allocation itself when its tunable glibc.malloc.hugetlb is 1, which is
 *    read once at program start; so the program sets it and executes itself
 *    again, first thing in main().
 *
 * All of it is advice: without transparent huge pages (sysfs "never", an
 * old kernel or C library, no free 2 MiB blocks) buffers stay on small
 * pages and work as before. GLIBC_TUNABLES=glibc.malloc.hugetlb=0 in the
 * environment turns the second way off.
 */
#ifndef KVCHAT_ENGINE_HUGEMEM_H
#define KVCHAT_ENGINE_HUGEMEM_H

#include <stddef.h>

/* Whether this kernel may back advised memory with huge pages (sysfs
 * "always" or "madvise"). */
int hugemem_available(void);

/* Allocate len bytes, 2 MiB aligned and advised for huge pages when len is
 * at least 4 MiB (smaller: plain malloc). Returns NULL when out of memory.
 * The caller frees it with free(). Thread-safe. */
void *hugemem_alloc(size_t len);

/* Make the C library advise huge pages for its large allocations: unless
 * GLIBC_TUNABLES already names glibc.malloc.hugetlb (either way) or huge
 * pages are unavailable, add glibc.malloc.hugetlb=1 to it and execute this
 * program again (/proc/self/exe) with argv. Call it first in main(), before
 * any thread, file or allocation worth keeping. Returns 0 when nothing was
 * to be done; -1 with errno when the exec failed (the program then runs on,
 * on small pages); on success it does not return. */
int hugemem_exec_advised(char **argv);

/* The process's anonymous memory and the part of it on huge pages, in
 * bytes (/proc/self/smaps_rollup). Returns 0, or -1 when unreadable. */
int hugemem_usage(size_t *anon, size_t *huge);

#endif
