/*
** server.c -- HTTP/1.1 server: a libuv TCP listener, one llhttp parser per
** connection, requests answered in order (see rafting/http.h).
**
** Memory: the server owns its connections, each freed when both its handles
** (socket, timer) have closed.  A connection owns the request it is parsing
** and a queue of the requests it handed to the application, in arrival
** order.  A queued request is with the application (R_APP), answered with
** its response bytes built (R_ANSWERED), or being written (R_WRITING; the
** written ones are always a prefix of the queue).  When a connection dies,
** R_APP requests are detached (c = NULL) and left to the application, the
** answered ones are freed, and the writing ones are freed by their write
** callback (UV_ECANCELED).
**
** Parsing: on_message_complete returns HPE_PAUSED, so llhttp stops after
** each request and the request is dispatched outside the parser; with
** max_pipeline requests queued, reading stops until one is written.
**
** HTTPS (o.tls): socket bytes go through the connection's rf_tls; its
** plaintext lands in rbuf like socket bytes do, what does not fit waits in
** spill.  An answer is encrypted whole and its records written with the
** request's own uv_write_t, so on_written still frees it in order.
*/
#include "rafting/http.h"
#include "rafting/buf.h"
#include "rafting/metrics.h"
#include "rafting/tls.h"
#include "rafting/util.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#define RBUF_SIZE 16384
#define LINGER_MS 2000 /* after the last answer: drain input, then close */
#define BACKLOG 511

enum { R_APP = 1, R_ANSWERED, R_WRITING, R_STREAM };
enum { T_NONE, T_IDLE, T_REQUEST, T_LINGER };
enum { H_NONE, H_FIELD, H_VALUE }; /* header parsing state */

typedef struct qpair {
  const char *k, *v;
  size_t klen, vlen;
} qpair;

typedef struct conn conn;

typedef struct req_s {
  rf_http_req pub; /* first: an rf_http_req * is a req_s * */
  conn *c;         /* NULL once detached */
  struct req_s *next;
  int state;
  int close_after; /* close the connection once this answer is written */
  int ended;       /* R_STREAM: the last chunk is in out */
  uint64_t t0;     /* dispatched at (rf_metrics_now), for the metrics */
  rf_buf url, hdr, body, extra, out;
  char *dec; /* decoded path, then decoded query pairs */
  qpair *q;
  size_t nq;
  uv_write_t wr;
  uint8_t *cipher; /* HTTPS: the answer's records being written */
} req_s;

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  rf_http_server *srv;
  conn *prev, *next;
  llhttp_t parser;
  req_s *cur, *ready; /* being parsed; complete, not yet dispatched */
  req_s *head, *tail;
  int nq;
  int nhandles;
  int tmode;
  int hstate;
  int crlf;
  size_t hbytes, hval;
  int err_status;
  const char *err_code;
  char err_msg[160];
  unsigned counted : 1, reading : 1, stopped : 1, lingering : 1, closing : 1;
  uv_shutdown_t shut;
  size_t rlo, rhi;
  char rbuf[RBUF_SIZE];
  rf_tls *tls;   /* HTTPS, else NULL */
  req_s *wreq;   /* the answer rf_tls_write is encrypting */
  rf_buf *capture; /* else: where a stream chunk's records go (flush_stream) */
  rf_buf spill;  /* HTTPS plaintext that did not fit in rbuf */
};

typedef struct rawwr { /* bytes written outside any answer (TLS, 100) */
  uv_write_t w;
  uint8_t *p;
} rawwr;

struct rf_http_server {
  uv_loop_t *loop;
  uv_tcp_t tcp;
  rf_http_opts o;
  conn *conns;
  int nactive, nall;
  int closing, listening;
  rf_http_done_cb done;
  void *done_ud;
  char cbuf[RBUF_SIZE]; /* HTTPS: ciphertext read, fed at once */
};

static void conn_close(conn *c);
static void conn_fail(conn *c, int status, const char *code, const char *msg);
static void conn_parse(conn *c);
static void flush(conn *c);

/* ---- requests ---------------------------------------------------------- */

static req_s *req_new(conn *c) {
  req_s *r = calloc(1, sizeof *r); /* zeroed: its rf_bufs are empty */
  if (r == NULL) return NULL;
  r->c = c;
  r->pub.method = r->pub.target = r->pub.path = r->pub.query = "";
  r->pub.body = "";
  return r;
}

static void req_free(req_s *r) {
  rf_buf_free(&r->url);
  rf_buf_free(&r->hdr);
  rf_buf_free(&r->body);
  rf_buf_free(&r->extra);
  rf_buf_free(&r->out);
  free(r->cipher);
  free(r->dec);
  free(r->q);
  free(r);
}

static void enqueue(conn *c, req_s *r) {
  r->next = NULL;
  if (c->tail) c->tail->next = r;
  else c->head = r;
  c->tail = r;
  c->nq++;
}

static void unqueue(conn *c, req_s *r) {
  req_s **pp = &c->head, *prev = NULL;
  while (*pp != r) prev = *pp, pp = &(*pp)->next;
  *pp = r->next;
  if (c->tail == r) c->tail = prev;
  c->nq--;
}

/* Header lookup in "name\0value\0..." storage. */
static const char *hdr_find(const rf_buf *h, const char *name, size_t *len) {
  const char *p = h->p, *end = p ? p + h->n : NULL; /* NULL + 0: UB */
  while (p && p < end) {
    const char *v = p + strlen(p) + 1;
    if (v >= end) break;
    if (strcasecmp(p, name) == 0) {
      if (len) *len = strlen(v);
      return v;
    }
    p = v + strlen(v) + 1;
  }
  return NULL;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Percent-decode s[0..n) into dst, NUL-terminated; returns the length, or
** -1 on a bad escape when strict (else the '%' is kept as is). */
static long pct_decode(char *dst, const char *s, size_t n, int plus,
                       int strict) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    int h = -1, l = -1;
    if (s[i] == '%' && i + 2 < n) {
      h = hexval((unsigned char)s[i + 1]);
      l = hexval((unsigned char)s[i + 2]);
    }
    if (s[i] == '%' && h >= 0 && l >= 0) {
      dst[o++] = (char)(h << 4 | l);
      i += 2;
    } else if (s[i] == '%' && strict) {
      return -1;
    } else {
      dst[o++] = plus && s[i] == '+' ? ' ' : s[i];
    }
  }
  dst[o] = '\0';
  return (long)o;
}

/* Split "k=v&k2" into decoded pairs stored in dst. */
static int parse_query(req_s *r, char *dst) {
  const char *s = r->pub.query, *end = s + r->pub.query_len;
  size_t n = 1;
  for (const char *p = s; p < end; p++) n += *p == '&';
  if ((r->q = calloc(n, sizeof *r->q)) == NULL) return UV_ENOMEM;
  while (s < end) {
    const char *amp = memchr(s, '&', (size_t)(end - s));
    const char *e = amp ? amp : end;
    const char *eq = memchr(s, '=', (size_t)(e - s));
    if (e > s) {
      qpair *q = &r->q[r->nq++];
      const char *kend = eq ? eq : e;
      q->k = dst;
      q->klen = (size_t)pct_decode(dst, s, (size_t)(kend - s), 1, 0);
      dst += q->klen + 1;
      q->v = dst;
      q->vlen = eq ? (size_t)pct_decode(dst, eq + 1, (size_t)(e - eq - 1),
                                        1, 0)
                   : (size_t)pct_decode(dst, "", 0, 0, 0);
      dst += q->vlen + 1;
    }
    s = amp ? amp + 1 : end;
  }
  return 0;
}

/* Fill the public fields once the request is complete.  Returns 0, 400 for
** a bad path escape, or UV_ENOMEM. */
static int finalize(req_s *r) {
  rf_http_req *q = &r->pub;
  const char *t = r->url.p ? r->url.p : "", *end = t + r->url.n, *p = t;
  q->target = t;
  q->target_len = r->url.n;
  if (strncasecmp(t, "http://", 7) == 0 || strncasecmp(t, "https://", 8) == 0) {
    p = strstr(t, "//") + 2; /* absolute-form: drop scheme and authority */
    p += strcspn(p, "/?");
  }
  const char *qm = memchr(p, '?', (size_t)(end - p));
  const char *pend = qm ? qm : end;
  q->query = qm ? qm + 1 : "";
  q->query_len = qm ? (size_t)(end - qm - 1) : 0;
  if ((r->dec = malloc((size_t)(pend - p) + 2 + 3 * (q->query_len + 1))) ==
      NULL)
    return UV_ENOMEM;
  long n = pct_decode(r->dec, p, (size_t)(pend - p), 0, 1);
  if (n < 0) return 400;
  q->path = r->dec;
  q->path_len = (size_t)n;
  if (parse_query(r, r->dec + n + 1)) return UV_ENOMEM;
  q->content_type = hdr_find(&r->hdr, "content-type", NULL);
  q->host = hdr_find(&r->hdr, "host", NULL);
  q->authorization = hdr_find(&r->hdr, "authorization", NULL);
  q->body = r->body.p ? r->body.p : "";
  q->body_len = r->body.n;
  return 0;
}

/* ---- llhttp callbacks (parser->data is the conn) ----------------------- */

/* Record why parsing fails; the caller answers once llhttp returns. */
static int set_err(conn *c, int status, const char *code, const char *fmt,
                   ...) {
  va_list ap;
  c->err_status = status;
  c->err_code = code;
  va_start(ap, fmt);
  vsnprintf(c->err_msg, sizeof c->err_msg, fmt, ap);
  va_end(ap);
  return -1;
}

static int nomem(conn *c) {
  return set_err(c, 503, "overloaded", "out of memory");
}

static void timer_set(conn *c, int mode);

static int on_message_begin(llhttp_t *p) {
  conn *c = p->data;
  if ((c->cur = req_new(c)) == NULL) return nomem(c);
  c->hbytes = 0;
  c->hstate = H_NONE;
  timer_set(c, T_REQUEST);
  return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  size_t max = c->srv->o.max_url_bytes;
  if (c->cur->url.n + n > max)
    return set_err(c, 414, "url_too_long",
                   "request-target longer than %zu bytes", max);
  rf_buf_add(&c->cur->url, at, n);
  return c->cur->url.oom ? nomem(c) : 0;
}

/* HTTP/0.9's bare "GET /path" has no version, headers or status line. */
static int no_version(conn *c, const llhttp_t *p) {
  if (p->http_major != 0) return 0;
  return set_err(c, 400, "bad_request", "request line without an HTTP "
                 "version");
}

static int hdr_add(conn *c, const void *d, size_t n, size_t cost) {
  size_t max = c->srv->o.max_header_bytes;
  if ((c->hbytes += cost) > max)
    return set_err(c, 431, "headers_too_large",
                   "request headers larger than %zu bytes", max);
  rf_buf_add(&c->cur->hdr, d, n);
  return c->cur->hdr.oom ? nomem(c) : 0;
}

/* Terminate a value that llhttp left open (an empty value). */
static int hdr_close_value(conn *c) {
  if (c->hstate != H_VALUE) return 0;
  c->hstate = H_NONE;
  return hdr_add(c, "", 1, 0);
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  if (hdr_close_value(c)) return -1;
  c->hstate = H_FIELD;
  return hdr_add(c, at, n, n);
}

static int on_header_field_complete(llhttp_t *p) {
  conn *c = p->data;
  if (hdr_add(c, "", 1, 4)) return -1; /* ": " and CRLF count too */
  c->hstate = H_VALUE;
  c->hval = c->cur->hdr.n;
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  return hdr_add(p->data, at, n, n);
}

static int on_header_value_complete(llhttp_t *p) {
  conn *c = p->data;
  rf_buf *h = &c->cur->hdr;
  while (h->n > c->hval && (h->p[h->n - 1] == ' ' || h->p[h->n - 1] == '\t'))
    h->n--;
  c->hstate = H_VALUE;
  return hdr_close_value(c);
}

static void on_raw_written(uv_write_t *w, int status) {
  (void)status; /* a broken connection shows on the read side */
  free(((rawwr *)w)->p);
  free(w);
}

/* Write p (malloc'd, taken) outside the answer queue. */
static int write_raw(conn *c, uint8_t *p, size_t n) {
  rawwr *w = malloc(sizeof *w);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int rc = UV_ENOMEM;
  if (w != NULL) {
    w->p = p;
    rc = uv_write(&w->w, (uv_stream_t *)&c->tcp, &b, 1, on_raw_written);
  }
  if (rc != 0) {
    free(p);
    free(w);
  }
  return rc;
}

static void on_written(uv_write_t *w, int status);

/* rf_tls's ciphertext: an answer's records, or handshake and interim ones */
static int tls_send(void *ud, uint8_t *p, size_t n) {
  conn *c = ud;
  req_s *r = c->wreq;
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int rc;
  if (c->closing) {
    free(p);
    return UV_ECANCELED;
  }
  if (c->capture != NULL) {
    rf_buf_add(c->capture, p, n);
    free(p);
    return c->capture->oom ? UV_ENOMEM : 0;
  }
  if (r == NULL) return write_raw(c, p, n);
  c->wreq = NULL;
  r->cipher = p;
  r->wr.data = r;
  if ((rc = uv_write(&r->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written)))
    return rc; /* r->cipher is freed with r */
  r->state = R_WRITING;
  return 0;
}

/* Plaintext from rf_tls: into rbuf, the rest into spill for later. */
static int tls_recv(void *ud, const uint8_t *p, size_t n) {
  conn *c = ud;
  size_t room = c->spill.n == 0 ? RBUF_SIZE - c->rhi : 0;
  size_t k = n < room ? n : room;
  memcpy(c->rbuf + c->rhi, p, k);
  c->rhi += k;
  if (k < n) rf_buf_add(&c->spill, p + k, n - k);
  return c->spill.oom ? UV_ENOMEM : 0;
}

/* Move spilled plaintext into rbuf's free room; 1 if any moved. */
static int unspill(conn *c) {
  size_t k;
  if (c->tls == NULL || c->spill.n == 0) return 0;
  if (c->rlo > 0) {
    memmove(c->rbuf, c->rbuf + c->rlo, c->rhi - c->rlo);
    c->rhi -= c->rlo;
    c->rlo = 0;
  }
  k = RBUF_SIZE - c->rhi < c->spill.n ? RBUF_SIZE - c->rhi : c->spill.n;
  if (k == 0) return 0;
  memcpy(c->rbuf + c->rhi, c->spill.p, k);
  c->rhi += k;
  memmove(c->spill.p, c->spill.p + k, c->spill.n - k);
  c->spill.n -= k;
  return 1;
}

/* "Expect: 100-continue": say so, unless an earlier answer is still due. */
static void on_interim_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void maybe_continue(conn *c, const llhttp_t *p) {
  static char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
  const char *e = hdr_find(&c->cur->hdr, "expect", NULL);
  if (e == NULL || strcasecmp(e, "100-continue") != 0 || p->http_minor < 1)
    return;
  for (req_s *r = c->head; r; r = r->next)
    if (r->state != R_WRITING) return;
  if (c->tls != NULL) { /* records through tls_send's raw path */
    rf_tls_write(c->tls, cont, sizeof cont - 1);
    return;
  }
  uv_write_t *w = malloc(sizeof *w);
  uv_buf_t b = uv_buf_init(cont, sizeof cont - 1);
  if (w && uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_interim_written))
    free(w);
}

/* Transfer-Encoding is either absent or exactly one "chunked": any other
** coding (gzip, "gzip, chunked", a repeated header) is one we would have
** to decode, and a smuggling vector if we did not (RFC 9112 6.1). */
static const char *bad_coding(const rf_buf *h) {
  const char *p = h->p, *end = p ? p + h->n : NULL, *found = NULL; /* NULL+0 */
  while (p && p < end) {
    const char *v = p + strlen(p) + 1;
    if (v >= end) break;
    if (strcasecmp(p, "transfer-encoding") == 0) {
      if (found != NULL || strcasecmp(v, "chunked") != 0) return v;
      found = v;
    }
    p = v + strlen(v) + 1;
  }
  return NULL;
}

static int on_headers_complete(llhttp_t *p) {
  conn *c = p->data;
  size_t max = c->srv->o.max_body_bytes;
  const char *te;
  if (hdr_close_value(c)) return -1;
  if (no_version(c, p)) return -1;
  if ((te = bad_coding(&c->cur->hdr)) != NULL)
    return set_err(c, 501, "not_implemented", "Transfer-Encoding \"%.64s\" "
                   "not implemented: only chunked", te);
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > max)
    return set_err(c, 413, "body_too_large",
                   "request body larger than %zu bytes", max);
  if ((p->flags & F_CONTENT_LENGTH) &&
      rf_buf_reserve(&c->cur->body, (size_t)p->content_length) != 0)
    return nomem(c);
  if ((p->flags & (F_CONTENT_LENGTH | F_CHUNKED)) &&
      (p->content_length > 0 || (p->flags & F_CHUNKED)))
    maybe_continue(c, p);
  return 0;
}

/* llhttp 8.1 in loose mode skips the two bytes after chunk data without
** looking at them; check they are CRLF.  c->crlf counts those still due. */
static int check_crlf(conn *c, const char *p, const char *end) {
  for (; c->crlf > 0 && p < end; c->crlf--)
    if (*p++ != "\r\n"[2 - c->crlf]) return -1;
  return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  conn *c = p->data;
  size_t max = c->srv->o.max_body_bytes;
  if (c->cur->body.n + n > max)
    return set_err(c, 413, "body_too_large",
                   "request body larger than %zu bytes", max);
  if ((p->flags & F_CHUNKED) && p->content_length == 0) { /* chunk done */
    c->crlf = 2;
    if (check_crlf(c, at + n, c->rbuf + c->rhi))
      return set_err(c, 400, "bad_request", "chunk data not followed by CRLF");
  }
  rf_buf_add(&c->cur->body, at, n);
  return c->cur->body.oom ? nomem(c) : 0;
}

static int on_message_complete(llhttp_t *p) {
  conn *c = p->data;
  req_s *r = c->cur;
  int rc;
  if (hdr_close_value(c)) return -1; /* trailers */
  if (no_version(c, p)) return -1;
  c->cur = NULL;
  r->pub.method = llhttp_method_name((llhttp_method_t)p->method);
  r->pub.http_minor = p->http_minor;
  /* CONNECT and Upgrade: we never switch protocols, so answer and close. */
  r->pub.keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
  r->close_after = !r->pub.keep_alive;
  if ((rc = finalize(r)) != 0) {
    req_free(r);
    return rc == 400 ? set_err(c, 400, "bad_request",
                               "malformed percent-encoding in path")
                     : nomem(c);
  }
  c->ready = r;
  timer_set(c, T_NONE);
  return HPE_PAUSED; /* dispatch outside the parser, one at a time */
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connection: timers and reading ------------------------------------ */

static void on_timer(uv_timer_t *t) {
  conn *c = t->data;
  if (c->tmode == T_REQUEST) {
    char msg[96];
    snprintf(msg, sizeof msg, "request not received within %d ms",
             c->srv->o.request_timeout_ms);
    conn_fail(c, 408, "request_timeout", msg);
  } else {
    conn_close(c); /* idle keep-alive, or done lingering */
  }
}

static void timer_set(conn *c, int mode) {
  const rf_http_opts *o = &c->srv->o;
  int ms = mode == T_IDLE      ? o->idle_timeout_ms
           : mode == T_REQUEST ? o->request_timeout_ms
                               : LINGER_MS;
  c->tmode = mode;
  if (mode == T_NONE || c->closing) uv_timer_stop(&c->timer);
  else uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  conn *c = h->data;
  (void)size;
  if (c->tls != NULL) *buf = uv_buf_init(c->srv->cbuf, sizeof c->srv->cbuf);
  else if (c->lingering) *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
  else *buf = uv_buf_init(c->rbuf + c->rhi, (unsigned)(RBUF_SIZE - c->rhi));
}

static void update_reading(conn *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  (void)buf;
  if (n == 0 || c->closing) return;
  if (c->lingering) {
    if (n < 0) conn_close(c);
    return;
  }
  if (n < 0) {
    conn_close(c); /* EOF too: clients do not half-close, they leave */
  } else if (c->tls != NULL) {
    if (rf_tls_feed(c->tls, buf->base, (size_t)n) < 0) {
      conn_close(c); /* no HTTP answer can reach a client that fails TLS */
      return;
    }
    conn_parse(c);
  } else {
    c->rhi += (size_t)n;
    conn_parse(c);
  }
  update_reading(c);
}

/* Read while a request may come (or while lingering); never with a full
** pipeline, whose leftover bytes wait in rbuf. */
static void update_reading(conn *c) {
  int want = !c->closing &&
             (c->lingering ||
              (!c->stopped && c->nq < c->srv->o.max_pipeline));
  if (want && !c->reading) {
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
      conn_close(c);
      return;
    }
    c->reading = 1;
  } else if (!want && c->reading) {
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = 0;
  }
}

/* ---- connection: parsing and dispatch ---------------------------------- */

static void dispatch(conn *c) {
  rf_http_server *s = c->srv;
  req_s *r = c->ready;
  c->ready = NULL;
  enqueue(c, r);
  r->state = R_APP;
  r->t0 = rf_metrics_now();
  if (r->close_after) c->stopped = 1; /* what follows is never parsed */
  s->o.on_request(s->o.ud, &r->pub);
}

static void parse_error(conn *c, llhttp_errno_t e) {
  char msg[128];
  if (c->err_status) {
    conn_fail(c, c->err_status, c->err_code, c->err_msg);
    return;
  }
  snprintf(msg, sizeof msg, "malformed request: %s (%s)",
           llhttp_get_error_reason(&c->parser), llhttp_errno_name(e));
  conn_fail(c, 400, "bad_request", msg);
}

static void parse_some(conn *c);

/* Parse rbuf; with HTTPS, refill it from spill while that makes room. */
static void conn_parse(conn *c) {
  do parse_some(c);
  while (!c->closing && !c->stopped && c->nq < c->srv->o.max_pipeline &&
         unspill(c));
}

static void parse_some(conn *c) {
  while (!c->closing && !c->stopped && c->rlo < c->rhi &&
         c->nq < c->srv->o.max_pipeline) {
    const char *d = c->rbuf + c->rlo;
    if (check_crlf(c, d, c->rbuf + c->rhi)) {
      conn_fail(c, 400, "bad_request", "chunk data not followed by CRLF");
      break;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, d, c->rhi - c->rlo);
    if (e == HPE_OK) {
      c->rlo = c->rhi;
    } else if (e == HPE_PAUSED) {
      c->rlo += (size_t)(llhttp_get_error_pos(&c->parser) - d);
      llhttp_resume(&c->parser);
      dispatch(c);
    } else {
      parse_error(c, e);
    }
  }
  if (c->rlo == c->rhi || c->stopped) c->rlo = c->rhi = 0;
}

/* ---- connection: writing answers in order ------------------------------ */

static void on_shutdown(uv_shutdown_t *sh, int status) {
  conn *c = sh->data;
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
    return;
  }
  /* Drain what the client still sends so that closing does not reset the
  ** connection under the answer it has not read yet. */
  c->lingering = 1;
  timer_set(c, T_LINGER);
  update_reading(c);
}

static void on_written(uv_write_t *w, int status) {
  req_s *r = w->data;
  conn *c = r->c;
  assert(c->head == r);
  unqueue(c, r);
  req_free(r);
  if (c->closing) return;
  if (status < 0) {
    conn_close(c);
  } else if (!c->stopped) {
    if (c->head == NULL && c->cur == NULL) timer_set(c, T_IDLE);
    conn_parse(c); /* a full pipeline may have room again */
    update_reading(c);
  }
}

/* The last answer before a close is queued: shut the write side down. */
static void close_after(conn *c) {
  c->stopped = 1;
  timer_set(c, T_NONE);
  update_reading(c);
  c->shut.data = c;
  if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
    conn_close(c);
}

/* A streamed chunk has its own write: the request may end (and be freed)
** while it is in flight. */
typedef struct chunk_wr {
  uv_write_t wr;
  conn *c;
  int last;
  char *p;
} chunk_wr;

static void on_chunk_written(uv_write_t *w, int status) {
  chunk_wr *k = (chunk_wr *)w;
  conn *c = k->c;
  int last = k->last;
  free(k->p);
  free(k);
  if (c->closing) return;
  if (status < 0) conn_close(c);
  else if (last && !c->stopped) {
    if (c->head == NULL && c->cur == NULL) timer_set(c, T_IDLE);
    conn_parse(c);
    update_reading(c);
  }
}

/* HTTPS: replace a stream chunk's plaintext by its records, so the chunk
** is still one write whose callback says when it left.  0 or <0. */
static int stream_encrypt(conn *c, rf_buf *out) {
  rf_buf cipher;
  int rc;
  rf_buf_init(&cipher);
  c->capture = &cipher;
  rc = out->n > 0 ? rf_tls_write(c->tls, out->p, out->n) : 0;
  c->capture = NULL;
  if (rc < 0 || cipher.oom) {
    rf_buf_free(&cipher);
    return rc < 0 ? rc : UV_ENOMEM;
  }
  rf_buf_free(out);
  *out = cipher;
  return 0;
}

/* Send what a stream at the front of the queue has; 1 if it ended (it is
** then unqueued and freed), 0 if it goes on, -1 if the connection closed. */
static int flush_stream(conn *c, req_s *r) {
  chunk_wr *k;
  uv_buf_t b;
  if (r->out.n == 0 && !r->ended) return 0;
  if ((k = malloc(sizeof(*k))) == NULL) {
    conn_close(c);
    return -1;
  }
  k->c = c;
  k->last = r->ended;
  if (c->tls != NULL && stream_encrypt(c, &r->out) < 0) {
    free(k);
    conn_close(c);
    return -1;
  }
  b = uv_buf_init(r->out.p, (unsigned)r->out.n);
  k->p = rf_buf_take(&r->out, NULL);
  if (uv_write(&k->wr, (uv_stream_t *)&c->tcp, &b, 1, on_chunk_written) != 0) {
    free(k->p);
    free(k);
    conn_close(c);
    return -1;
  }
  if (!r->ended) return 0;
  unqueue(c, r);
  if (r->close_after) close_after(c);
  req_free(r);
  return c->stopped ? -1 : 1;
}

/* Write every answered request at the front of the queue. */
static void flush(conn *c) {
  for (req_s *r = c->head, *next; r && !c->closing; r = next) {
    next = r->next;
    if (r->state == R_WRITING) continue;
    if (r->state == R_STREAM) {
      if (flush_stream(c, r) != 1) return;
      continue;
    }
    if (r->state != R_ANSWERED) break;
    if (c->tls != NULL) { /* tls_send writes the records with r->wr */
      c->wreq = r;
      if (rf_tls_write(c->tls, r->out.p, r->out.n) < 0 || c->wreq != NULL) {
        c->wreq = NULL; /* failed, or held before a handshake: give up */
        conn_close(c);
        return;
      }
    } else {
      uv_buf_t b = uv_buf_init(r->out.p, (unsigned)r->out.n);
      r->wr.data = r;
      if (uv_write(&r->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        conn_close(c);
        return;
      }
      r->state = R_WRITING;
    }
    if (r->close_after) {
      close_after(c);
      return;
    }
  }
}

/* ---- connection: failing and closing ----------------------------------- */

/* Answer with a JSON error after the queued answers, then close. */
static void conn_fail(conn *c, int status, const char *code, const char *msg) {
  req_s *r;
  if (c->closing || c->stopped) return;
  c->stopped = 1;
  if (c->cur) req_free(c->cur);
  c->cur = NULL;
  timer_set(c, T_NONE);
  update_reading(c);
  if ((r = req_new(c)) == NULL) {
    conn_close(c);
    return;
  }
  r->close_after = 1;
  r->state = R_APP;
  r->t0 = rf_metrics_now(); /* never dispatched: time the answer from here */
  enqueue(c, r);
  if (status == 503) rf_http_add_header(&r->pub, "Retry-After", "1");
  rf_http_json_error(&r->pub, status, code, msg);
}

static void maybe_done(rf_http_server *s) {
  if (!s->closing || s->listening || s->conns) return;
  rf_http_done_cb done = s->done;
  void *ud = s->done_ud;
  free(s);
  if (done) done(ud);
}

static void on_conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  rf_http_server *s = c->srv;
  if (--c->nhandles > 0) return;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nall--;
  rf_tls_free(c->tls);
  rf_buf_free(&c->spill);
  free(c);
  maybe_done(s);
}

/* Detach the requests the application holds; free unsent answers.  Only
** the writing prefix stays queued, for on_written to free. */
static req_s *detach_all(conn *c) {
  req_s *r = c->head, *next, *held = NULL, **tail = &held;
  while (r && r->state == R_WRITING) r = r->next;
  for (; r; r = next) {
    next = r->next;
    unqueue(c, r);
    if (r->state == R_APP || r->state == R_STREAM) {
      r->c = NULL;
      r->next = NULL;
      *tail = r;
      tail = &r->next;
    } else {
      req_free(r);
    }
  }
  return held;
}

static void conn_close(conn *c) {
  rf_http_server *s = c->srv;
  if (c->closing) return;
  c->closing = 1;
  c->reading = 0;
  if (c->counted) s->nactive--;
  c->counted = 0;
  if (c->cur) req_free(c->cur);
  c->cur = NULL;
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
  for (req_s *r = detach_all(c), *next; r; r = next) {
    next = r->next; /* on_abort may answer (and free) r */
    if (s->o.on_abort) s->o.on_abort(s->o.ud, &r->pub);
  }
}

/* ---- the listener ------------------------------------------------------ */

static conn *conn_new(rf_http_server *s) {
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->srv = s;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->nhandles = 2;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nall++;
  llhttp_init(&c->parser, HTTP_REQUEST, &settings);
  c->parser.data = c;
  return c;
}

static void conn_start(conn *c) {
  rf_http_server *s = c->srv;
  if (s->o.tls != NULL) { /* HTTPS: every byte goes through rf_tls */
    rf_tls_io io = {c, tls_send, tls_recv};
    if ((c->tls = rf_tls_new(s->o.tls, &io, NULL)) == NULL) {
      conn_close(c);
      return;
    }
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if (s->nactive < s->o.max_connections) {
    c->counted = 1;
    s->nactive++;
    timer_set(c, T_IDLE);
    update_reading(c);
  } else if (s->nall > 2 * s->o.max_connections + 16) {
    conn_close(c); /* a flood: no answer at all */
  } else {
    conn_fail(c, 503, "too_many_connections",
              "the node has too many open HTTP connections");
  }
}

static void on_connection(uv_stream_t *l, int status) {
  rf_http_server *s = l->data;
  conn *c;
  if (status < 0 || s->closing || (c = conn_new(s)) == NULL) return;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  conn_start(c);
}

int rf_http_adopt(rf_http_server *s, uv_os_sock_t fd) {
  conn *c;
  int rc;
  if (s->closing) return UV_EINVAL;
  if ((c = conn_new(s)) == NULL) return UV_ENOMEM;
  if ((rc = uv_tcp_open(&c->tcp, fd)) != 0) {
    conn_close(c);
    return rc;
  }
  conn_start(c);
  return 0;
}

void rf_http_opts_init(rf_http_opts *o) {
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->max_body_bytes = 1 << 20;
  o->max_header_bytes = 8 << 10;
  o->max_url_bytes = 4 << 10;
  o->max_connections = 1024;
  o->idle_timeout_ms = 30000;
  o->request_timeout_ms = 10000;
  o->max_pipeline = 16;
}

int rf_http_start(uv_loop_t *loop, const rf_http_opts *o,
                  rf_http_server **out) {
  struct sockaddr_storage ss;
  rf_http_server *s;
  int rc;
  if (o->on_request == NULL || o->max_body_bytes == 0 ||
      o->max_header_bytes == 0 || o->max_url_bytes == 0 ||
      o->max_connections <= 0 || o->idle_timeout_ms <= 0 ||
      o->request_timeout_ms <= 0 || o->max_pipeline < 0)
    return UV_EINVAL;
  if ((rc = rf_addr_resolve(o->host, o->port, &ss)) != 0) return rc;
  if ((s = calloc(1, sizeof *s)) == NULL) return UV_ENOMEM;
  s->loop = loop;
  s->o = *o;
  if (s->o.max_pipeline == 0) s->o.max_pipeline = 16;
  if ((rc = uv_tcp_init(loop, &s->tcp)) != 0) {
    free(s);
    return rc;
  }
  s->tcp.data = s;
  s->listening = 1;
  rc = uv_tcp_bind(&s->tcp, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&s->tcp, BACKLOG, on_connection);
  if (rc != 0) {
    rf_http_close(s, NULL, NULL); /* freed once the handle has closed */
    return rc;
  }
  *out = s;
  return 0;
}

int rf_http_port(const rf_http_server *s) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  if (uv_tcp_getsockname(&s->tcp, (struct sockaddr *)&ss, &len) != 0)
    return -1;
  return ss.ss_family == AF_INET6
             ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
             : ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

int rf_http_connections(const rf_http_server *s) { return s->nactive; }

static void on_listener_closed(uv_handle_t *h) {
  rf_http_server *s = h->data;
  s->listening = 0;
  maybe_done(s);
}

void rf_http_close(rf_http_server *s, rf_http_done_cb done, void *ud) {
  if (s->closing) return;
  s->closing = 1;
  s->done = done;
  s->done_ud = ud;
  uv_close((uv_handle_t *)&s->tcp, on_listener_closed);
  for (conn *c = s->conns; c; c = c->next) conn_close(c);
}

/* ---- request accessors ------------------------------------------------- */

const char *rf_http_header(const rf_http_req *req, const char *name,
                           size_t *len) {
  return hdr_find(&((const req_s *)req)->hdr, name, len);
}

const char *rf_http_query_get(const rf_http_req *req, const char *name,
                              size_t *len) {
  const req_s *r = (const req_s *)req;
  size_t n = strlen(name);
  for (size_t i = 0; i < r->nq; i++)
    if (r->q[i].klen == n && memcmp(r->q[i].k, name, n) == 0) {
      if (len) *len = r->q[i].vlen;
      return r->q[i].v;
    }
  return NULL;
}

int rf_http_query_at(const rf_http_req *req, size_t i, const char **k,
                     size_t *klen, const char **v, size_t *vlen) {
  const req_s *r = (const req_s *)req;
  if (i >= r->nq) return 0;
  *k = r->q[i].k;
  *klen = r->q[i].klen;
  *v = r->q[i].v;
  *vlen = r->q[i].vlen;
  return 1;
}

/* ---- answers ----------------------------------------------------------- */

static const char *reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 301: return "Moved Permanently";
  case 302: return "Found";
  case 304: return "Not Modified";
  case 307: return "Temporary Redirect";
  case 308: return "Permanent Redirect";
  case 400: return "Bad Request";
  case 401: return "Unauthorized";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 412: return "Precondition Failed";
  case 413: return "Content Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Content";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 502: return "Bad Gateway";
  case 503: return "Service Unavailable";
  case 504: return "Gateway Timeout";
  default: return "Unknown";
  }
}

/* A header name is a token; a value has no CR, LF or NUL. */
static int valid_header(const char *name, const char *value) {
  if (*name == '\0') return 0;
  for (const char *p = name; *p; p++)
    if ((unsigned char)*p <= ' ' || strchr("()<>@,;:\\\"/[]?={}\x7f", *p))
      return 0;
  return strpbrk(value, "\r\n") == NULL;
}

int rf_http_add_header(rf_http_req *req, const char *name, const char *value) {
  req_s *r = (req_s *)req;
  static const char *const own[] = {"content-length", "connection",
                                    "transfer-encoding", "content-type"};
  assert(r->state == R_APP);
  if (!valid_header(name, value)) return UV_EINVAL;
  for (size_t i = 0; i < sizeof own / sizeof *own; i++)
    if (strcasecmp(name, own[i]) == 0) return UV_EINVAL;
  if (rf_buf_reserve(&r->extra, strlen(name) + strlen(value) + 4) != 0)
    return UV_ENOMEM; /* the appends below cannot fail */
  rf_buf_str(&r->extra, name);
  rf_buf_str(&r->extra, ": ");
  rf_buf_str(&r->extra, value);
  rf_buf_str(&r->extra, "\r\n");
  return 0;
}

void rf_http_close_after(rf_http_req *req) {
  req_s *r = (req_s *)req;
  assert(r->state == R_APP);
  r->close_after = 1;
}

/* Status line, headers and body into r->out. */
static int build(req_s *r, int status, const char *ctype, const void *body,
                 size_t len) {
  char line[160];
  int nobody = status < 200 || status == 204 || status == 304;
  int head = strcmp(r->pub.method, "HEAD") == 0;
  rf_buf *o = &r->out;
  if (ctype && !valid_header("Content-Type", ctype)) ctype = NULL;
  if (rf_buf_reserve(o, sizeof line + (ctype ? strlen(ctype) + 16 : 0) +
                            r->extra.n + 32 + len) != 0)
    return UV_ENOMEM;
  snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", status, reason(status));
  rf_buf_str(o, line);
  if (ctype) {
    rf_buf_str(o, "Content-Type: ");
    rf_buf_str(o, ctype);
    rf_buf_str(o, "\r\n");
  }
  if (!nobody && r->state != R_STREAM) {
    snprintf(line, sizeof line, "Content-Length: %zu\r\n", len);
    rf_buf_str(o, line);
  }
  if (r->close_after) rf_buf_str(o, "Connection: close\r\n");
  else if (r->pub.http_minor == 0) rf_buf_str(o, "Connection: keep-alive\r\n");
  if (r->extra.n) rf_buf_add(o, r->extra.p, r->extra.n);
  rf_buf_str(o, "\r\n");
  if (!nobody && !head && len) rf_buf_add(o, body, len);
  return o->oom ? UV_ENOMEM : 0;
}

void rf_http_respond(rf_http_req *req, int status, const char *content_type,
                     const void *body, size_t len) {
  req_s *r = (req_s *)req;
  conn *c = r->c;
  assert(r->state == R_APP);
  rf_metrics_http(req->path, req->path_len, status, r->t0);
  if (c == NULL) { /* the client is gone: nothing to send */
    req_free(r);
    return;
  }
  if (build(r, status, content_type, body, len) != 0) {
    unqueue(c, r);
    req_free(r);
    conn_close(c); /* cannot answer in order any more */
    return;
  }
  r->state = R_ANSWERED;
  flush(c);
}

/* ---- streamed answers -------------------------------------------------- */

int rf_http_stream_begin(rf_http_req *req, int status, const char *ctype) {
  req_s *r = (req_s *)req;
  size_t n0 = r->extra.n;
  assert(r->state == R_APP);
  if (req->http_minor == 0 || strcmp(req->method, "GET") != 0)
    return UV_EINVAL; /* no chunked answers in HTTP/1.0; HEAD has no body */
  rf_buf_str(&r->extra, "Cache-Control: no-store\r\n"
                        "Transfer-Encoding: chunked\r\n");
  if (r->extra.oom) {
    r->extra.n = n0;
    r->extra.oom = 0;
    return UV_ENOMEM;
  }
  rf_metrics_http(req->path, req->path_len, status, r->t0);
  r->state = R_STREAM; /* build() leaves Content-Length out */
  if (r->c && build(r, status, ctype, NULL, 0) != 0) {
    r->state = R_APP;
    return UV_ENOMEM;
  }
  if (r->c) flush(r->c);
  return 0;
}

int rf_http_stream_write(rf_http_req *req, const void *data, size_t len) {
  req_s *r = (req_s *)req;
  char line[24];
  assert(r->state == R_STREAM && !r->ended);
  if (r->c == NULL) return UV_ECANCELED;
  if (len == 0) return 0; /* an empty chunk would end the answer */
  snprintf(line, sizeof line, "%zx\r\n", len);
  rf_buf_str(&r->out, line);
  rf_buf_add(&r->out, data, len);
  rf_buf_str(&r->out, "\r\n");
  if (r->out.oom) {
    conn_close(r->c); /* the answer cannot go on in order */
    return UV_ENOMEM;
  }
  flush(r->c);
  return 0;
}

void rf_http_stream_end(rf_http_req *req) {
  req_s *r = (req_s *)req;
  assert(r->state == R_STREAM && !r->ended);
  if (r->c == NULL) {
    req_free(r);
    return;
  }
  rf_buf_str(&r->out, "0\r\n\r\n");
  r->ended = 1;
  if (r->out.oom) {
    unqueue(r->c, r);
    conn_close(r->c);
    req_free(r);
    return;
  }
  flush(r->c);
}

void rf_http_json_error(rf_http_req *req, int status, const char *code,
                        const char *message) {
  size_t a = rf_json_quote(NULL, 0, code, strlen(code));
  size_t b = rf_json_quote(NULL, 0, message, strlen(message));
  size_t n = a + b + sizeof "{\"error\":,\"message\":}\n";
  char *s = malloc(n);
  if (s == NULL) {
    rf_http_respond(req, status, NULL, NULL, 0);
    return;
  }
  memcpy(s, "{\"error\":", 9);
  rf_json_quote(s + 9, a + 1, code, strlen(code));
  memcpy(s + 9 + a, ",\"message\":", 11);
  rf_json_quote(s + 20 + a, b + 1, message, strlen(message));
  memcpy(s + 20 + a + b, "}\n", 3); /* JSON answers end with a newline */
  rf_http_respond(req, status, "application/json", s, 22 + a + b);
  free(s);
}

