/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* log.h — leveled diagnostics to stderr (journald reads the "<N>" syslog prefix when stderr is the
 * journal) and the access log sink. Thread-safe: each line goes out in one write(2). */
#ifndef RLPROXY_LOG_H
#define RLPROXY_LOG_H

#include <stddef.h>

enum log_level {
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARN,
    LOG_LEVEL_NOTICE,
    LOG_LEVEL_INFO,
    LOG_LEVEL_DEBUG,
};

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
const char *log_level_name(enum log_level level);
int log_level_parse(const char *text, enum log_level *out); /* 0 or -1 */

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LEVEL_DEBUG)                                                    \
            log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__);                                                 \
    } while (0)

/* Access log: "stderr", "stdout", "off" or a path (opened O_APPEND). Returns 0 or -1 with errno. */
int log_access_open(const char *target);
/* The same in two steps, so a reload can open the new target before it commits to anything:
 * prepare opens (0, or -1 with errno, nothing changed), install switches the writers over,
 * discard closes a prepared sink that will not be installed. */
struct log_access_sink {
    int fd;
    int owned;
};
int log_access_prepare(const char *target, struct log_access_sink *out);
void log_access_install(struct log_access_sink *sink);
void log_access_discard(struct log_access_sink *sink);
/* For -t: 0 when target could be opened for append (an absent file in a directory we may write
 * to counts), -1 with errno otherwise. Creates and changes nothing. */
int log_access_check(const char *target);
int log_access_enabled(void);
void log_access_line(const char *line, size_t len); /* line without trailing newline */
/* log.access_buffer: lines for a file gather in a buffer of this many bytes (0: a write per
 * line) and go out when it is full, when the oldest is LOG_ACCESS_FLUSH_MS old, at a reopen and
 * at the close. 0, or -1 when out of memory (the old buffer stays). */
#define LOG_ACCESS_FLUSH_MS 1000
int log_access_set_buffer(size_t bytes);
/* Writes out what the buffer holds: the main loop calls it every second, so a quiet proxy's last
 * lines are not held longer than that. */
void log_access_flush(void);
void log_access_close(void);

#endif
