/* fuzz_util.c — see fuzz_util.h. */
#include "fuzz_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
    fprintf(stderr, "\n==FUZZ CHECK FAILED== %s:%d: %s: ", file, line, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void fuzz_quiet_logs(void)
{
    if (log_open("/dev/null") != 0)
        fuzz_fail(__FILE__, __LINE__, "log_open", "cannot open /dev/null");
}

int fuzz_memfd(const char *name)
{
    int fd = memfd_create(name, MFD_CLOEXEC);
    FUZZ_CHECK(fd >= 0, "memfd_create failed");
    return fd;
}

void fuzz_memfd_set(int fd, const uint8_t *data, size_t size)
{
    FUZZ_CHECK(ftruncate(fd, 0) == 0, "ftruncate failed");
    size_t done = 0;
    while (done < size) {
        ssize_t k = pwrite(fd, data + done, size - done, (off_t)done);
        FUZZ_CHECK(k > 0, "pwrite to the memfd failed");
        done += (size_t)k;
    }
    FUZZ_CHECK(lseek(fd, 0, SEEK_SET) == 0, "lseek failed");
}

/* The lowest descriptor number not in use. */
static int lowest_free(void)
{
    int fd = dup(2);
    FUZZ_CHECK(fd >= 0, "dup failed");
    close(fd);
    return fd;
}

int fuzz_fds_mark(void) { return lowest_free(); }

void fuzz_fds_check(int mark)
{
    int now = lowest_free();
    if (now != mark) {
        char link[64], target[256] = "?";
        snprintf(link, sizeof link, "/proc/self/fd/%d", mark);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 1] = '\0';
        fuzz_fail(__FILE__, __LINE__, "now == mark", "descriptor leak: %d is open (%s)", mark,
                  target);
    }
}

bool fuzz_clean_text(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        uint32_t cp;
        size_t k;
        if (c < 0x80) {
            if (c == 0x7F || (c < 0x20 && c != '\n' && c != '\t'))
                return false;
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            k = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF)
            k = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4)
            k = 4, cp = c & 0x07;
        else
            return false;
        if (i + k > n)
            return false;
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + j] & 0x3F);
        }
        if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        if ((cp >= 0x80 && cp <= 0x9F) || cp == 0xA0 || cp == 0xAD || cp == 0xFEFF ||
            cp == 0x2028 || cp == 0x2029)
            return false;
        i += k;
    }
    return true;
}
