/*
** http_client.c -- blocking HTTP/1.1 (+TLS) client for `rafting ctl`
** (see http_client.h).  Every socket call is bounded by the request's
** deadline: the socket is blocking, with SO_RCVTIMEO/SO_SNDTIMEO set to
** the time left before each call, so plain and TLS I/O share one path.
*/
#include "ctl/http_client.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <llhttp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_BODY_BYTES (256u << 20)

typedef struct conn {
  int fd;
  SSL_CTX *ctx;
  SSL *ssl;
  uint64_t deadline;
} conn;

uint64_t rf_hc_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int errf(char *err, size_t len, int rc, const char *fmt,
                const char *a) {
  snprintf(err, len, fmt, a);
  return rc;
}

/* ---- URLs --------------------------------------------------------------- */

int rf_hc_parse_url(const char *s, int tls_default, rf_hc_url *u,
                    const char **rest, char *err, size_t errlen) {
  const char *h = s, *hend, *p;
  char *end;
  long port;
  memset(u, 0, sizeof(*u));
  u->tls = tls_default;
  if (strncmp(s, "http://", 7) == 0) h = s + 7, u->tls = tls_default;
  else if (strncmp(s, "https://", 8) == 0) h = s + 8, u->tls = 1;
  else if (strstr(s, "://") != NULL)
    return errf(err, errlen, -1, "'%s': only http:// and https://", s);
  if (*h == '[') {
    if ((hend = strchr(h, ']')) == NULL)
      return errf(err, errlen, -1, "'%s': unclosed '['", s);
    p = hend + 1;
    h++;
  } else {
    hend = h + strcspn(h, ":/");
    p = hend;
  }
  if (hend == h || (size_t)(hend - h) >= sizeof(u->host))
    return errf(err, errlen, -1, "'%s': no host", s);
  memcpy(u->host, h, (size_t)(hend - h));
  u->port = u->tls ? 443 : 80;
  if (*p == ':') {
    errno = 0;
    port = strtol(p + 1, &end, 10);
    if (errno || end == p + 1 || port < 1 || port > 65535)
      return errf(err, errlen, -1, "'%s': bad port", s);
    u->port = (int)port;
    p = end;
  }
  if (*p != '\0' && *p != '/')
    return errf(err, errlen, -1, "'%s': expected [scheme://]host:port", s);
  if (rest) *rest = p;
  return 0;
}

/* ---- the socket under a deadline --------------------------------------- */

static int left_ms(const conn *c) {
  uint64_t now = rf_hc_now_ms();
  if (now >= c->deadline) return 0;
  return c->deadline - now > INT_MAX / 2 ? INT_MAX / 2 : (int)(c->deadline - now);
}

/* Bound the next blocking call by the time left; 0 if none is left. */
static int arm(conn *c) {
  int ms = left_ms(c);
  struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
  if (ms <= 0) return 0;
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return 1;
}

static int connect_one(conn *c, const struct addrinfo *ai) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  ai->ai_protocol);
  int e = 0;
  socklen_t elen = sizeof(e);
  struct pollfd pf;
  if (fd < 0) return -errno;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) e = errno;
    else {
      pf.fd = fd;
      pf.events = POLLOUT;
      int r;
      while ((r = poll(&pf, 1, left_ms(c))) < 0 && errno == EINTR) {}
      if (r == 0) e = ETIMEDOUT;
      else if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
        e = errno;
    }
  }
  if (e != 0) {
    close(fd);
    return -e;
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  c->fd = fd;
  return 0;
}

static int dial(conn *c, const rf_hc_url *u, char *err, size_t errlen) {
  struct addrinfo hints, *res, *ai;
  char port[16];
  int rc, last = -ECONNREFUSED;
  memset(&hints, 0, sizeof(hints));
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  snprintf(port, sizeof(port), "%d", u->port);
  if ((rc = getaddrinfo(u->host, port, &hints, &res)) != 0)
    return errf(err, errlen, RF_HC_ECONNECT, "cannot resolve: %s",
                gai_strerror(rc));
  for (ai = res; ai; ai = ai->ai_next)
    if ((last = connect_one(c, ai)) == 0) break;
  freeaddrinfo(res);
  if (last == -ETIMEDOUT)
    return errf(err, errlen, RF_HC_ECONNECT, "connect: %s", "timed out");
  if (last < 0)
    return errf(err, errlen, RF_HC_ECONNECT, "connect: %s", strerror(-last));
  return 0;
}

/* ---- TLS ---------------------------------------------------------------- */

static int tls_fail(conn *c, char *err, size_t errlen, const char *what) {
  long v = c->ssl ? SSL_get_verify_result(c->ssl) : X509_V_OK;
  unsigned long e = ERR_get_error();
  char buf[256];
  if (v != X509_V_OK)
    snprintf(buf, sizeof(buf), "%s: certificate: %s", what,
             X509_verify_cert_error_string(v));
  else if (e != 0)
    snprintf(buf, sizeof(buf), "%s: %s", what, ERR_reason_error_string(e));
  else
    snprintf(buf, sizeof(buf), "%s failed", what);
  ERR_clear_error();
  return errf(err, errlen, left_ms(c) ? RF_HC_ETLS : RF_HC_ETIMEDOUT, "%s",
              buf);
}

static int is_ip(const char *h) {
  unsigned char tmp[16];
  return inet_pton(AF_INET, h, tmp) == 1 || inet_pton(AF_INET6, h, tmp) == 1;
}

static int tls_start(conn *c, const rf_hc_url *u, const char *cacert,
                     char *err, size_t errlen) {
  int rc;
  if ((c->ctx = SSL_CTX_new(TLS_client_method())) == NULL)
    return tls_fail(c, err, errlen, "TLS setup");
  SSL_CTX_set_min_proto_version(c->ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(c->ctx, SSL_VERIFY_PEER, NULL);
  if (cacert ? SSL_CTX_load_verify_locations(c->ctx, cacert, NULL) != 1
             : SSL_CTX_set_default_verify_paths(c->ctx) != 1)
    return tls_fail(c, err, errlen, cacert ? "loading --cacert" : "CA paths");
  if ((c->ssl = SSL_new(c->ctx)) == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
    return tls_fail(c, err, errlen, "TLS setup");
  if (is_ip(u->host)) /* an address is checked against the IP SANs */
    rc = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), u->host);
  else
    rc = SSL_set_tlsext_host_name(c->ssl, u->host) == 1 &&
         SSL_set1_host(c->ssl, u->host) == 1;
  if (rc != 1) return tls_fail(c, err, errlen, "TLS host name");
  while (arm(c)) {
    int r = SSL_connect(c->ssl), e;
    if (r == 1) return 0;
    e = SSL_get_error(c->ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) break;
  }
  return tls_fail(c, err, errlen, "TLS handshake");
}

/* ---- I/O ---------------------------------------------------------------- */

/* 0, or RF_HC_ETIMEDOUT / RF_HC_ELOST. */
static int conn_write(conn *c, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w;
    if (!arm(c)) return RF_HC_ETIMEDOUT;
    if (c->ssl) {
      int r = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n), e;
      if (r <= 0) {
        e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
        return RF_HC_ELOST;
      }
      w = r;
    } else if ((w = send(c->fd, p, n, MSG_NOSIGNAL)) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return RF_HC_ELOST;
    }
    p += w, n -= (size_t)w;
  }
  return 0;
}

/* Bytes read, 0 at EOF, or RF_HC_ETIMEDOUT / RF_HC_ELOST. */
static long conn_read(conn *c, char *p, size_t cap) {
  for (;;) {
    ssize_t r;
    if (!arm(c)) return RF_HC_ETIMEDOUT;
    if (c->ssl) {
      int n = SSL_read(c->ssl, p, (int)cap), e;
      if (n > 0) return n;
      e = SSL_get_error(c->ssl, n);
      if (e == SSL_ERROR_ZERO_RETURN) return 0;
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) continue;
      return RF_HC_ELOST;
    }
    if ((r = recv(c->fd, p, cap, 0)) >= 0) return (long)r;
    if (errno != EINTR && errno != EAGAIN) return RF_HC_ELOST;
  }
}

static void conn_close(conn *c) {
  if (c->ssl) SSL_free(c->ssl);
  if (c->ctx) SSL_CTX_free(c->ctx);
  if (c->fd >= 0) close(c->fd);
}

/* ---- the answer --------------------------------------------------------- */

typedef struct parse {
  rf_hc_resp *r;
  rf_buf field, value;
  FILE *stream;
  int done, oom;
} parse;

static int on_field(llhttp_t *p, const char *at, size_t n) {
  parse *ps = p->data;
  rf_buf_add(&ps->field, at, n);
  return 0;
}

static int on_value(llhttp_t *p, const char *at, size_t n) {
  parse *ps = p->data;
  rf_buf_add(&ps->value, at, n);
  return 0;
}

static int on_value_complete(llhttp_t *p) {
  parse *ps = p->data;
  char **slot = NULL;
  rf_buf_add(&ps->field, "", 1);
  rf_buf_add(&ps->value, "", 1);
  if (ps->field.oom || ps->value.oom) return ps->oom = 1, -1;
  if (strcasecmp(ps->field.p, "location") == 0) slot = &ps->r->location;
  else if (strcasecmp(ps->field.p, "content-type") == 0)
    slot = &ps->r->content_type;
  else if (strcasecmp(ps->field.p, "retry-after") == 0)
    ps->r->retry_after = atoi(ps->value.p);
  if (slot && *slot == NULL && (*slot = strdup(ps->value.p)) == NULL)
    return ps->oom = 1, -1;
  rf_buf_reset(&ps->field);
  rf_buf_reset(&ps->value);
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  parse *ps = p->data;
  if (ps->stream && p->status_code / 100 == 2) { /* a stream (watch) */
    fwrite(at, 1, n, ps->stream);
    fflush(ps->stream);
    return 0;
  }
  if (ps->r->body.n + n > MAX_BODY_BYTES) return -1;
  rf_buf_add(&ps->r->body, at, n);
  return ps->r->body.oom ? (ps->oom = 1, -1) : 0;
}

static int on_complete(llhttp_t *p) {
  parse *ps = p->data;
  ps->done = 1;
  ps->r->status = p->status_code;
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
  .on_header_field = on_field,
  .on_header_value = on_value,
  .on_header_value_complete = on_value_complete,
  .on_body = on_body,
  .on_message_complete = on_complete,
};

static int read_answer(conn *c, rf_hc_resp *r, FILE *stream, char *err,
                       size_t errlen) {
  llhttp_t p;
  parse ps;
  char buf[16384];
  int rc = 0;
  memset(&ps, 0, sizeof(ps));
  ps.r = r;
  ps.stream = stream;
  llhttp_init(&p, HTTP_RESPONSE, &settings);
  p.data = &ps;
  while (!ps.done) {
    long n = conn_read(c, buf, sizeof(buf));
    llhttp_errno_t e;
    if (n < 0) {
      rc = errf(err, errlen, (int)n, "%s", n == RF_HC_ETIMEDOUT
                ? "no answer in time" : "connection lost");
      break;
    }
    e = n == 0 ? llhttp_finish(&p) : llhttp_execute(&p, buf, (size_t)n);
    if (ps.done) break;
    if (e != HPE_OK || n == 0) {
      rc = ps.oom ? errf(err, errlen, RF_HC_ENOMEM, "%s", "out of memory")
         : n == 0 && e == HPE_OK
             ? errf(err, errlen, RF_HC_ELOST, "%s", "connection closed early")
             : errf(err, errlen, RF_HC_EPROTO, "bad answer: %s",
                    llhttp_errno_name(e));
      break;
    }
  }
  rf_buf_free(&ps.field);
  rf_buf_free(&ps.value);
  return rc;
}

/* ---- the request -------------------------------------------------------- */

static int build(rf_buf *o, const rf_hc_url *u, const rf_hc_req *q) {
  int v6 = strchr(u->host, ':') != NULL;
  rf_buf_printf(o, "%s %s HTTP/1.1\r\nHost: %s%s%s:%d\r\n", q->method,
                q->target, v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
  rf_buf_str(o, "User-Agent: rafting-ctl\r\nConnection: close\r\n");
  if (q->token) rf_buf_printf(o, "Authorization: Bearer %s\r\n", q->token);
  rf_buf_printf(o, "Content-Length: %zu\r\n\r\n", q->body_len);
  rf_buf_add(o, q->body, q->body_len);
  return o->oom ? RF_HC_ENOMEM : 0;
}

int rf_hc_request(const rf_hc_url *u, const rf_hc_req *q, rf_hc_resp *r,
                  char *err, size_t errlen) {
  conn c = {-1, NULL, NULL, q->deadline_ms};
  rf_buf out;
  int rc;
  memset(r, 0, sizeof(*r));
  r->retry_after = -1;
  rf_buf_init(&r->body);
  rf_buf_init(&out);
  if ((rc = build(&out, u, q)) < 0) {
    errf(err, errlen, rc, "%s", "out of memory");
    goto done;
  }
  if ((rc = dial(&c, u, err, errlen)) < 0) goto done;
  if (u->tls && (rc = tls_start(&c, u, q->cacert, err, errlen)) < 0) {
    if (rc == RF_HC_ETIMEDOUT) rc = RF_HC_ECONNECT; /* nothing was sent */
    goto done;
  }
  if ((rc = conn_write(&c, out.p, out.n)) < 0) {
    errf(err, errlen, rc, "%s", rc == RF_HC_ETIMEDOUT ? "sending timed out"
                                                      : "connection lost");
    goto done;
  }
  r->sent = 1;
  if (q->stream) c.deadline = UINT64_MAX; /* a stream ends when the server ends it */
  rc = read_answer(&c, r, q->stream, err, errlen);
done:
  rf_buf_free(&out);
  conn_close(&c);
  return rc;
}

void rf_hc_resp_free(rf_hc_resp *r) {
  free(r->location);
  free(r->content_type);
  rf_buf_free(&r->body);
  memset(r, 0, sizeof(*r));
}
