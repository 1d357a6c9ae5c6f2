/*
** test_notify.c -- rf_notify (rafting/notify.h) against a datagram socket
** of our own standing in for systemd: path and abstract names, no
** variable, malformed names, nobody listening.
*/
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "rafting/error.h"
#include "rafting/notify.h"

/* A bound datagram socket for name ("/path" or "@abstract"), or -1. */
static int listener(const char *name) {
  struct sockaddr_un sa;
  size_t n = strlen(name);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  memset(&sa, 0, sizeof(sa));
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, name, n);
  if (name[0] == '@') sa.sun_path[0] = '\0';
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n +
                                 (name[0] == '/'))) < 0) {
    perror("listener");
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

/* rf_notify(state) with NOTIFY_SOCKET=name arrives as exactly state. */
static void check_roundtrip(const char *name, const char *state) {
  char got[256];
  ssize_t n;
  int fd = listener(name);
  CHECK(fd >= 0);
  if (fd < 0) return;
  setenv("NOTIFY_SOCKET", name, 1);
  CHECK(rf_notify(state) == 0);
  n = recv(fd, got, sizeof(got) - 1, MSG_DONTWAIT);
  CHECK(n == (ssize_t)strlen(state));
  if (n >= 0) {
    got[n] = '\0';
    CHECK(strcmp(got, state) == 0);
  }
  close(fd);
}

int main(void) {
  char root[256], path[300], abstract[64], longname[200];
  if (check_tmpdir(root, sizeof(root), "test_notify") < 0) return 1;
  snprintf(path, sizeof(path), "%s/notify", root);
  snprintf(abstract, sizeof(abstract), "@rafting-test-notify-%d", (int)getpid());

  unsetenv("NOTIFY_SOCKET");
  CHECK(rf_notify("READY=1") == 0); /* no manager: nothing to do */

  check_roundtrip(path, "READY=1");
  check_roundtrip(abstract, "STOPPING=1");
  unlink(path);

  /* nobody bound there any more: the send fails with the errno */
  setenv("NOTIFY_SOCKET", path, 1);
  CHECK_STATUS(rf_notify("READY=1"), -ENOENT, rf_strerror);

  setenv("NOTIFY_SOCKET", "relative/sock", 1);
  CHECK_STATUS(rf_notify("READY=1"), RF_EINVAL, rf_strerror);
  setenv("NOTIFY_SOCKET", "@", 1);
  CHECK_STATUS(rf_notify("READY=1"), RF_EINVAL, rf_strerror);
  memset(longname, 'x', sizeof(longname) - 1);
  longname[0] = '/';
  longname[sizeof(longname) - 1] = '\0';
  setenv("NOTIFY_SOCKET", longname, 1);
  CHECK_STATUS(rf_notify("READY=1"), RF_EINVAL, rf_strerror);

  unsetenv("NOTIFY_SOCKET");
  rmdir(root);
  return check_summary("test_notify");
}
