/*
** wal_segment.c -- segment file names and the few syscalls the WAL needs
** done carefully: full writes, directory fsync, crash-safe file creation.
**
** Segments are named "<seq>-<base>.wal" with both numbers as 16 hex digits:
** seq counts segments up from 1 with no gaps; base is the index the next
** entry would take when the segment was created (its SEGMENT record says the
** same).  Nothing here allocates.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "wal_internal.h"

void wal_seg_name(char *out, uint64_t seq, uint64_t base) {
  snprintf(out, WAL_NAME_LEN + 1, "%016" PRIx64 "-%016" PRIx64 ".wal", seq,
           base);
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

static int parse_hex16(const char *s, uint64_t *v) {
  *v = 0;
  for (int i = 0; i < 16; i++) {
    int d = hexval((unsigned char)s[i]);
    if (d < 0) return -1;
    *v = (*v << 4) | (uint64_t)d;
  }
  return 0;
}

int wal_seg_parse_name(const char *name, uint64_t *seq, uint64_t *base) {
  if (strlen(name) != WAL_NAME_LEN || name[16] != '-' ||
      strcmp(name + 33, ".wal") != 0)
    return -1;
  return parse_hex16(name, seq) == 0 && parse_hex16(name + 17, base) == 0
             ? 0 : -1;
}

int wal_write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t k = write(fd, p, len);
    if (k < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += k;
    len -= (size_t)k;
  }
  return 0;
}

int wal_fsync_dir(int dirfd) {
  return fsync(dirfd) < 0 ? -errno : 0;
}

static int hook(int (*h)(void *, const char *), void *ud, const char *what) {
  return h ? h(ud, what) : 0;
}

int wal_seg_create(int dirfd, const wal_seghdr *h,
                   int (*h_io)(void *, const char *), void *ud) {
  char name[WAL_NAME_LEN + 1], tmp[WAL_NAME_LEN + 5];
  uint8_t rec[WAL_HDR + WAL_SEG_PAYLOAD];
  size_t len = wal_encode_seghdr(rec, h);
  int fd, rc;
  wal_seg_name(name, h->seq, h->base);
  snprintf(tmp, sizeof(tmp), "%s.tmp", name);
  fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
              0644);
  if (fd < 0) return -errno;
  /* the record must be on disk before the name is: a segment that exists
  ** under its real name always starts with a whole SEGMENT record */
  if ((rc = hook(h_io, ud, "write")) < 0 ||
      (rc = wal_write_all(fd, rec, len)) < 0 ||
      (rc = hook(h_io, ud, "sync")) < 0 ||
      (rc = fsync(fd) < 0 ? -errno : 0) < 0 ||
      (rc = hook(h_io, ud, "rename")) < 0 ||
      (rc = renameat(dirfd, tmp, dirfd, name) < 0 ? -errno : 0) < 0 ||
      (rc = hook(h_io, ud, "syncdir")) < 0 ||
      (rc = wal_fsync_dir(dirfd)) < 0) {
    close(fd);
    unlinkat(dirfd, tmp, 0);
    return rc;
  }
  return fd;
}
