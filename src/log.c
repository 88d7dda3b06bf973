/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* log.c — see log.h. */

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int current_level = LOG_LEVEL_INFO;
static int journal_prefix = -1; /* lazily: 1 when stderr is journald's stream */
static int access_fd = -1;
static int access_owned;

/* Lines for an access-log file gather here and go out in one write: by size, when the oldest is
 * LOG_ACCESS_FLUSH_MS old (checked at each line and by log_access_flush from the main loop),
 * and before a reopen or the close (nginx's access_log buffer=). A write(2) per line cost ~10%
 * of the throughput at 1 KiB (bench/run). stderr and stdout stay a line at a time: the journal
 * and a terminal want lines as they come. */
static struct {
    pthread_mutex_t lock;
    char *data;
    size_t len, cap;    /* cap 0: unbuffered */
    uint64_t oldest_ms; /* when the first line now in data came */
} buffered = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0};

static const char *const level_names[] = {"error", "warn", "notice", "info", "debug"};
/* syslog priorities for journald's "<N>" prefix */
static const int level_priority[] = {3, 4, 5, 6, 7};

void log_set_level(enum log_level level) { atomic_store(&current_level, (int)level); }

enum log_level log_get_level(void) { return (enum log_level)atomic_load(&current_level); }

const char *log_level_name(enum log_level level)
{
    if ((unsigned)level > LOG_LEVEL_DEBUG)
        return "?";
    return level_names[level];
}

int log_level_parse(const char *text, enum log_level *out)
{
    for (int i = 0; i <= LOG_LEVEL_DEBUG; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

/* journald sets JOURNAL_STREAM to "dev:inode" of the stream it hands us; when it matches stderr we
 * emit "<N>" priorities and leave timestamps to the journal. */
static int stderr_is_journal(void)
{
    const char *stream = getenv("JOURNAL_STREAM");
    if (stream == NULL)
        return 0;
    unsigned long long dev, ino;
    struct stat st;
    if (sscanf(stream, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    if (journal_prefix < 0)
        journal_prefix = stderr_is_journal();

    char line[2048];
    size_t used;
    if (journal_prefix) {
        used = (size_t)snprintf(line, sizeof line, "<%d>%s: ", level_priority[level], level_names[level]);
    } else {
        struct timespec now;
        struct tm tm;
        clock_gettime(CLOCK_REALTIME, &now);
        gmtime_r(&now.tv_sec, &tm);
        used = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
        used += (size_t)snprintf(line + used, sizeof line - used, ".%03ldZ rlproxy[%d] %s: ",
                                 now.tv_nsec / 1000000, (int)getpid(), level_names[level]);
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + used, sizeof line - used, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    used += (size_t)n;
    if (used > sizeof line - 2)
        used = sizeof line - 2;
    line[used++] = '\n';
    ssize_t unused = write(STDERR_FILENO, line, used);
    (void)unused;
}

int log_access_prepare(const char *target, struct log_access_sink *out)
{
    out->fd = -1;
    out->owned = 0;
    if (target == NULL || strcmp(target, "off") == 0)
        return 0;
    if (strcmp(target, "stderr") == 0) {
        out->fd = STDERR_FILENO;
    } else if (strcmp(target, "stdout") == 0) {
        out->fd = STDOUT_FILENO;
    } else {
        out->fd = open(target, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (out->fd < 0)
            return -1;
        out->owned = 1;
    }
    return 0;
}

void log_access_discard(struct log_access_sink *sink)
{
    if (sink->owned && sink->fd >= 0)
        close(sink->fd);
    sink->fd = -1;
    sink->owned = 0;
}

static uint64_t monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* With buffered.lock held. */
static void flush_locked(void)
{
    size_t done = 0;
    while (done < buffered.len && access_fd >= 0) {
        ssize_t n = write(access_fd, buffered.data + done, buffered.len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk: the lines are lost, as a write per line would lose them */
        done += (size_t)n;
    }
    buffered.len = 0;
}

void log_access_flush(void)
{
    pthread_mutex_lock(&buffered.lock);
    flush_locked();
    pthread_mutex_unlock(&buffered.lock);
}

int log_access_set_buffer(size_t bytes)
{
    pthread_mutex_lock(&buffered.lock);
    flush_locked();
    char *data = bytes > 0 ? realloc(buffered.data, bytes) : NULL;
    int rc = bytes > 0 && data == NULL ? -1 : 0;
    if (bytes == 0) {
        free(buffered.data);
        buffered.data = NULL;
        buffered.cap = 0;
    } else if (data != NULL) {
        buffered.data = data;
        buffered.cap = bytes;
    }
    pthread_mutex_unlock(&buffered.lock);
    return rc;
}

void log_access_install(struct log_access_sink *sink)
{
    log_access_flush(); /* what was logged before belongs to the file it was logged for */
    /* Workers write without a lock. Replacing one file by another reuses the descriptor number
     * with dup2, so a racing write lands in the old or the new file, never in a socket that took a
     * closed number. Other swaps keep the old descriptor open (one per such reload). */
    if (access_owned && access_fd >= 0 && sink->owned) {
        dup2(sink->fd, access_fd);
        close(sink->fd);
    } else {
        access_fd = sink->fd;
        access_owned = sink->owned;
    }
    sink->fd = -1;
    sink->owned = 0;
}

int log_access_open(const char *target)
{
    struct log_access_sink sink;
    if (log_access_prepare(target, &sink) != 0)
        return -1;
    log_access_install(&sink);
    return 0;
}

/* Opens without O_CREAT (a check creates nothing); a missing file is fine when its directory
 * would let us create it. O_NONBLOCK: a FIFO without a reader must not hang the check. */
int log_access_check(const char *target)
{
    if (target == NULL || strcmp(target, "off") == 0 || strcmp(target, "stderr") == 0 ||
        strcmp(target, "stdout") == 0)
        return 0;
    int fd = open(target, O_WRONLY | O_APPEND | O_CLOEXEC | O_NONBLOCK);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != ENOENT)
        return -1;
    char *dir = strdup(target);
    if (dir == NULL)
        return -1;
    char *slash = strrchr(dir, '/');
    const char *parent = slash == NULL ? "." : slash == dir ? "/" : dir;
    if (slash != NULL && slash != dir)
        *slash = '\0';
    struct stat st;
    int rc = 0;
    if (stat(parent, &st) != 0)
        rc = -1; /* errno: the directory does not exist */
    else if (!S_ISDIR(st.st_mode))
        rc = (errno = ENOTDIR, -1);
    else if (access(parent, W_OK | X_OK) != 0)
        rc = -1;
    int saved = errno;
    free(dir);
    errno = saved;
    return rc;
}

int log_access_enabled(void) { return access_fd >= 0; }

void log_access_line(const char *line, size_t len)
{
    int fd = access_fd;
    if (fd < 0)
        return;
    if (access_owned && buffered.cap > 0) {
        pthread_mutex_lock(&buffered.lock);
        if (buffered.cap > 0 && len + 1 <= buffered.cap) {
            if (buffered.len + len + 1 > buffered.cap)
                flush_locked();
            uint64_t now = monotonic_ms();
            if (buffered.len == 0)
                buffered.oldest_ms = now;
            memcpy(buffered.data + buffered.len, line, len);
            buffered.data[buffered.len + len] = '\n';
            buffered.len += len + 1;
            if (now - buffered.oldest_ms >= LOG_ACCESS_FLUSH_MS)
                flush_locked();
            pthread_mutex_unlock(&buffered.lock);
            return;
        }
        flush_locked(); /* a line longer than the buffer goes out after what came before */
        pthread_mutex_unlock(&buffered.lock);
    }
    struct iovec iov[2] = {{(void *)line, len}, {(void *)"\n", 1}};
    ssize_t unused = writev(fd, iov, 2);
    (void)unused;
}

void log_access_close(void)
{
    log_access_flush();
    if (access_owned && access_fd >= 0)
        close(access_fd);
    access_fd = -1;
    access_owned = 0;
}
