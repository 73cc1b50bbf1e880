/* hugemem.c — large buffers on transparent huge pages (see hugemem.h).
 *
 * Linux and glibc (2.35 or later for the tunable; older ones ignore it).
 */
#include "engine/hugemem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define HUGE_PAGE ((size_t)2 << 20)
#define ALLOC_MIN ((size_t)4 << 20)   /* smaller buffers: plain malloc */
#define TUNABLE "glibc.malloc.hugetlb"

int hugemem_available(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f)
        return 0;
    char line[128] = "";
    if (!fgets(line, sizeof line, f))
        line[0] = '\0';
    fclose(f);
    return strstr(line, "[always]") || strstr(line, "[madvise]");
}

void *hugemem_alloc(size_t len)
{
    if (len < ALLOC_MIN)
        return malloc(len ? len : 1);
    void *p = NULL;
    if (posix_memalign(&p, HUGE_PAGE, len) != 0)
        return NULL;
    /* Advice only: without transparent huge pages this is plain memory. */
    madvise(p, len & ~(HUGE_PAGE - 1), MADV_HUGEPAGE);
    return p;
}

int hugemem_exec_advised(char **argv)
{
    const char *old = getenv("GLIBC_TUNABLES");
    if ((old && strstr(old, TUNABLE)) || !hugemem_available())
        return 0;
    char *val = NULL;
    if (asprintf(&val, "%s%s" TUNABLE "=1", old ? old : "", old && *old ? ":" : "") < 0)
        return -1;
    /* If the exec fails the variable stays set, which is harmless: the
     * C library read its tunables at start, this process runs on as is. */
    int rc = setenv("GLIBC_TUNABLES", val, 1);
    free(val);
    if (rc != 0)
        return -1;
    execv("/proc/self/exe", argv);
    return -1;
}

int hugemem_usage(size_t *anon, size_t *huge)
{
    FILE *f = fopen("/proc/self/smaps_rollup", "re");
    if (!f)
        return -1;
    char line[256];
    unsigned long long kb;
    int found = 0;
    *anon = *huge = 0;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "Anonymous: %llu kB", &kb) == 1) {
            *anon = (size_t)kb << 10;
            found |= 1;
        } else if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1) {
            *huge = (size_t)kb << 10;
            found |= 2;
        }
    }
    fclose(f);
    return found == 3 ? 0 : -1;
}
