/*
** notify.c -- the sd_notify protocol (see rafting/notify.h).
**
** Nothing is allocated; the socket lives only for the one send.
*/
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rafting/error.h"
#include "rafting/notify.h"

/* $NOTIFY_SOCKET into *sa; its length, or RF_EINVAL. */
static int notify_addr(const char *name, struct sockaddr_un *sa) {
  size_t n = strlen(name);
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if ((name[0] != '/' && name[0] != '@') || n < 2 || n >= sizeof(sa->sun_path))
    return RF_EINVAL;
  memcpy(sa->sun_path, name, n);
  if (name[0] == '@') sa->sun_path[0] = '\0'; /* Linux abstract namespace */
  return (int)(offsetof(struct sockaddr_un, sun_path) + n +
               (name[0] == '/')); /* a path counts its NUL */
}

int rf_notify(const char *state) {
  const char *name = getenv("NOTIFY_SOCKET");
  struct sockaddr_un sa;
  int len, fd, rc = 0;
  if (name == NULL || *name == '\0') return 0;
  if ((len = notify_addr(name, &sa)) < 0) return len;
  if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0) return -errno;
  if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
             (socklen_t)len) < 0)
    rc = -errno;
  close(fd);
  return rc;
}
