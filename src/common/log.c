/* log.c — see log.h. */
#include "common/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static struct {
    pthread_mutex_t lock;
    FILE *file;          /* NULL: stderr */
    const char *tag;
    log_level_t level;
} g_log = { PTHREAD_MUTEX_INITIALIZER, NULL, "kvchat", LOG_INFO };

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };

void log_set_tag(const char *tag) { g_log.tag = tag ? tag : "kvchat"; }

void log_set_level(log_level_t level) { g_log.level = level; }

int log_level_parse(const char *s, log_level_t *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LOG_WARN;
        return 0;
    }
    return -1;
}

int log_open(const char *path)
{
    FILE *f = fopen(path, "a");
    if (!f)
        return -errno;
    setvbuf(f, NULL, _IOLBF, 0);
    pthread_mutex_lock(&g_log.lock);
    if (g_log.file)
        fclose(g_log.file);
    g_log.file = f;
    pthread_mutex_unlock(&g_log.lock);
    return 0;
}

void log_close(void)
{
    pthread_mutex_lock(&g_log.lock);
    if (g_log.file)
        fclose(g_log.file);
    g_log.file = NULL;
    pthread_mutex_unlock(&g_log.lock);
}

void log_vmsg(log_level_t level, const char *fmt, va_list ap)
{
    if (level < g_log.level)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);

    pthread_mutex_lock(&g_log.lock);
    FILE *out = g_log.file ? g_log.file : stderr;
    fprintf(out, "%s.%03ldZ %-5s %s: ", stamp, ts.tv_nsec / 1000000L,
            level_names[level], g_log.tag);
    vfprintf(out, fmt, ap);
    size_t n = strlen(fmt);
    if (n == 0 || fmt[n - 1] != '\n')
        fputc('\n', out);
    fflush(out);
    pthread_mutex_unlock(&g_log.lock);
}

void log_msg(log_level_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, fmt, ap);
    va_end(ap);
}
