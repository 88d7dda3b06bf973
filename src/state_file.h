/* SPDX-License-Identifier: BSD-2-Clause (see LICENSE) */
/* state_file.h — the state file (state_file:): the local limiter's windows, and what origins said
 * of their limits while it still holds, written to disk so that a restart does not reset them, and
 * read back at start. Owns the file format (versioned text with
 * a CRC-32 trailer), the atomic write (temporary file, fsync, rename, fsync of the directory) and
 * the bounded reader. Must not decide anything about requests, and must never make a start fail:
 * every problem with the file is a message for a warning and an empty start.
 *
 * The limiter counts on the monotonic clock, which restarts at boot; the file holds wall-clock
 * times. Saving converts with (realtime - monotonic) taken at the moment of the save, loading with
 * the same difference taken at the moment of the load. */
#ifndef RLPROXY_STATE_FILE_H
#define RLPROXY_STATE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "limiter.h"

#define STATE_FILE_MAX_BYTES (64u << 20) /* larger files are neither written nor read */
#define STATE_FILE_INTERVAL_MS 5000      /* how often server.c writes it, besides at stop */

struct state_file_counts {
    uint64_t rules;   /* rule sections in the file */
    uint64_t matched; /* of those, rules of the running config (same name and parameters) */
    uint64_t windows; /* windows restored */
    uint64_t entries; /* entries restored (ones too old or in the future are dropped) */
    uint64_t learned; /* keys whose learned limits were restored (ones all past are dropped) */
};

/* The file's text for every window of `limiter`, in malloc'd memory (*len bytes, NUL-terminated),
 * or NULL when out of memory or over STATE_FILE_MAX_BYTES. */
char *state_file_render(struct limiter *limiter, uint64_t now_mono_us, uint64_t now_wall_us,
                        size_t *len);

/* Checks text[0..len) as a whole and, only when all of it is valid, restores its windows into
 * `limiter` (NULL: check only). 0, or -1 with the reason in err and nothing restored. */
int state_file_parse(struct limiter *limiter, const char *text, size_t len, uint64_t now_mono_us,
                     uint64_t now_wall_us, struct state_file_counts *counts, char *err,
                     size_t err_len);

/* Writes the file atomically: 0, or -1 with the reason in err (the previous file is left). */
int state_file_save(struct limiter *limiter, const char *path, uint64_t now_mono_us,
                    uint64_t now_wall_us, char *err, size_t err_len);
/* Reads the file into `limiter`. 1 when it does not exist (a first start), 0 when read, -1 with
 * the reason in err when it cannot be used (nothing is restored then). */
int state_file_load(struct limiter *limiter, const char *path, uint64_t now_mono_us,
                    uint64_t now_wall_us, struct state_file_counts *counts, char *err,
                    size_t err_len);

/* CRC-32 (IEEE 802.3, as zlib's crc32) of data[0..len). */
uint32_t state_file_crc32(const void *data, size_t len);

/* CLOCK_REALTIME in microseconds. */
uint64_t state_file_wall_now_us(void);

#endif
