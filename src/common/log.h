/* log.h — timestamped, levelled log lines shared by every kvchat program.
 *
 * Lines go to one FILE (stderr unless log_open() names a file) in the form
 *   2026-11-25T03:52:31.123Z INFO  engine: message
 * Writes are serialized by a mutex, so lines from threads never interleave.
 * The sink is process state by nature (fd 2); it is the one mutable static
 * of the common library.
 */
#ifndef KVCHAT_COMMON_LOG_H
#define KVCHAT_COMMON_LOG_H

#include <stdarg.h>

typedef enum {
    LOG_DEBUG = 0,
    LOG_INFO = 1,
    LOG_WARN = 2,
    LOG_ERROR = 3,
} log_level_t;

/* Set the tag printed on every line (e.g. "engine"); the string must stay
 * valid for the life of the process. */
void log_set_tag(const char *tag);

typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON = 1 } log_format_t;

/* LOG_FORMAT_JSON writes one JSON object per line, for log collectors:
 *   {"ts":"2026-11-25T03:52:31.123Z","level":"info","tag":"engine","msg":"..."} */
void log_set_format(log_format_t format);

/* Lines below `level` are dropped. Default LOG_INFO. */
void log_set_level(log_level_t level);

/* Parse "debug|info|warn|error"; returns 0 and sets *out, or -1. */
int log_level_parse(const char *s, log_level_t *out);

/* Append to `path` (created 0644) instead of stderr. Returns 0, or -errno
 * and leaves the sink unchanged. */
int log_open(const char *path);

/* Close a file opened by log_open() and go back to stderr. */
void log_close(void);

void log_msg(log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(log_level_t level, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
