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
    log_format_t format;
} g_log = { PTHREAD_MUTEX_INITIALIZER, NULL, "kvchat", LOG_INFO, LOG_FORMAT_TEXT };

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };

void log_set_tag(const char *tag) { g_log.tag = tag ? tag : "kvchat"; }

void log_set_level(log_level_t level) { g_log.level = level; }

void log_set_format(log_format_t format) { g_log.format = format; }

/* The message as a JSON string body: quotes, backslashes and control
 * characters escaped (bytes >= 0x80 pass through; callers log UTF-8). */
static void put_json_string(FILE *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
        } else if (c == '\n') {
            fputs("\\n", out);
        } else if (c < 0x20) {
            fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
        } else {
            fputc(c, out);
        }
    }
}

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
    if (g_log.format == LOG_FORMAT_JSON) {
        char msg[4096];
        int n = vsnprintf(msg, sizeof msg, fmt, ap);
        size_t len = n < 0 ? 0 : (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;
        while (len && msg[len - 1] == '\n')
            len--;
        static const char *const lower[] = { "debug", "info", "warn", "error" };
        fprintf(out, "{\"ts\":\"%s.%03ldZ\",\"level\":\"%s\",\"tag\":\"%s\",\"msg\":\"", stamp,
                ts.tv_nsec / 1000000L, lower[level], g_log.tag);
        put_json_string(out, msg, len);
        fputs("\"}\n", out);
    } else {
        fprintf(out, "%s.%03ldZ %-5s %s: ", stamp, ts.tv_nsec / 1000000L,
                level_names[level], g_log.tag);
        vfprintf(out, fmt, ap);
        size_t n = strlen(fmt);
        if (n == 0 || fmt[n - 1] != '\n')
            fputc('\n', out);
    }
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
