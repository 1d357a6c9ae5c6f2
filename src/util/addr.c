/*
** addr.c -- "host:port" addresses (see rafting/util.h).
**
** Hosts are numeric (or "localhost"): the cluster is configured with
** addresses, and resolving names would block the event loop.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "rafting/util.h"

static int why(char *out, size_t len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int why(char *out, size_t len, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (len > 0) vsnprintf(out, len, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

int rf_addr_split(const char *s, char *host, size_t hostlen, int *port,
                  char *w, size_t wlen) {
  const char *colon, *h = s, *hend;
  unsigned char a[16];
  int v6 = *s == '[';
  long p = 0;
  if (strlen(s) >= RF_ADDR_MAX) return why(w, wlen, "address too long");
  if (v6) {
    h = s + 1;
    hend = strchr(h, ']');
    colon = hend ? hend + 1 : NULL;
    if (colon && *colon != ':') colon = NULL;
  } else {
    colon = strrchr(s, ':');
    hend = colon;
    if (colon && memchr(s, ':', (size_t)(colon - s)))
      return why(w, wlen, "malformed address \"%s\" (write IPv6 as "
                          "[::1]:7001)", s);
  }
  if (colon == NULL || hend == h || colon[1] == '\0')
    return why(w, wlen, "malformed address \"%s\" (expected host:port, e.g. "
                        "127.0.0.1:7001)", s);
  for (const char *c = colon + 1; *c; c++) {
    if (*c < '0' || *c > '9') return why(w, wlen, "malformed port in \"%s\"", s);
    if (p <= 65535) p = p * 10 + (*c - '0');
  }
  if (p < 1 || p > 65535)
    return why(w, wlen, "port %s out of range 1..65535", colon + 1);
  if ((size_t)(hend - h) >= hostlen) return why(w, wlen, "address too long");
  memcpy(host, h, (size_t)(hend - h));
  host[hend - h] = '\0';
  if (v6 ? inet_pton(AF_INET6, host, a) != 1
         : strcmp(host, "localhost") != 0 && inet_pton(AF_INET, host, a) != 1)
    return why(w, wlen, "host \"%s\" must be a numeric %s", host,
               v6 ? "IPv6 address" : "IPv4 address or localhost");
  *port = (int)p;
  return 0;
}

int rf_addr_resolve(const char *host, int port, struct sockaddr_storage *ss) {
  struct sockaddr_in *in = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
  if (host == NULL || port < 0 || port > 65535) return -EINVAL;
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  memset(ss, 0, sizeof *ss);
  if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    return 0;
  }
  if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    return 0;
  }
  return -EINVAL;
}

int rf_addr_format(char *out, size_t len, const char *host, int port) {
  int v6 = strchr(host, ':') != NULL;
  return snprintf(out, len, v6 ? "[%s]:%d" : "%s:%d", host, port);
}
