/*
** trim.c -- removing a large file without stalling other fsyncs.
**
** On ext4 mounted with `discard` (and, less, without it) unlinking a file
** of 100 MB frees all its blocks in the next journal commit: whoever
** fdatasyncs next -- the WAL, on every write -- waits for that commit,
** 200 ms measured on the development VM for 150 MB.  Shrinking the file a
** step at a time, each step made durable before the next, spreads the
** freeing over many small commits.  Plain libc; nothing allocated.
**
** A reader may hold the file open (a backup download): it takes a shared
** flock, and then the file is only unlinked, never shrunk under it; its
** blocks go when the reader closes it.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rafting/util.h"

int rf_trim_step(int fd, size_t step) {
  struct stat st;
  off_t to;
  if (fstat(fd, &st) < 0) return -errno;
  if (st.st_size == 0) return 0;
  to = (uint64_t)st.st_size > step ? st.st_size - (off_t)step : 0;
  if (ftruncate(fd, to) < 0) return -errno;
  return to == 0 ? 0 : 1;
}

int rf_remove_gradually(int dirfd, const char *name, size_t step) {
  char tmp[512];
  int fd, rc = 0;
  if (snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= (int)sizeof(tmp))
    return -ENAMETOOLONG;
  /* out of its name first: a crash part way leaves a temp file, which an
  ** open removes, never a short file under the real name */
  if (renameat(dirfd, name, dirfd, tmp) < 0) return -errno;
  if (fsync(dirfd) < 0) rc = -errno;
  if ((fd = openat(dirfd, tmp, O_WRONLY | O_CLOEXEC)) >= 0) {
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) /* else someone reads it */
      while (rf_trim_step(fd, step) > 0)
        if (fdatasync(fd) < 0) break;
    close(fd);
  }
  if (unlinkat(dirfd, tmp, 0) < 0 && rc == 0) rc = -errno;
  return rc;
}
