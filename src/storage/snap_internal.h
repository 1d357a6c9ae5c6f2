/*
** snap_internal.h -- what snapstore.c needs from the snapshot codec
** (snapshot.c) beyond the public API: the parse with its offset and reason
** kept apart, so that each caller words its own message.
*/
#ifndef RAFTING_SNAP_INTERNAL_H
#define RAFTING_SNAP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "rafting/snapshot.h"

/* "RFSNAP" then the format version as two decimal digits: every version
** keeps that prefix, so another version is named, never misread. */
#define SNAP_MAGIC "RFSNAP02"
#define SNAP_VERSION 2 /* written; version 1 is still read */

/* The format version of the snapshot at p (0..99), or -1 when p does not
** start with "RFSNAP" and two digits. */
int snap_version(const uint8_t *p, size_t len);

/* rf_snap_restore() without the message: on RF_SNAP_ECORRUPT, *off is the
** byte offset and reason says what is wrong there. */
int snap_parse(const uint8_t *p, size_t len, rf_store *into,
               rf_snap_meta *meta, size_t *off, char *reason,
               size_t reasonlen);
/* The header's fields when p[0..len) starts with a snapshot header (at
** least RF_SNAP_HDR bytes, version 1 or 2): the version, else -1.  The
** rest of meta is zeroed. */
int snap_peek(const uint8_t *p, size_t len, rf_snap_meta *meta);
/* rf_snap_head() without the message; *start: the first record's offset. */
int snap_head(const uint8_t *p, size_t avail, uint64_t total,
              rf_snap_meta *meta, size_t *start, size_t *off, char *reason,
              size_t rlen);

/* rf_snap_restore() without progress lines: for worker threads. */
int snap_restore_quiet(const void *buf, size_t len, rf_store *into,
                       rf_snap_meta *meta, char *err, size_t errlen);

#endif
