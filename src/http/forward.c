/*
** forward.c -- forwarding requests to the leader (see rafting/forward.h).
**
** Memory: the forwarder owns its targets (one per host:port it was asked
** for, i.e. per cluster node, kept until close), its connections and the
** forwards in flight (jobs).  A connection is freed once both its handles
** (socket, timer) have closed; it carries at most one job.  A job is freed
** right after its callback.  Every path that ends a job detaches it from
** its connection first, so a job still attached when the connection's
** close callback runs was cancelled by rf_fwd_close().
**
** Each connection's timer is the deadline of its job, or its idle expiry
** while pooled.  The parser pauses in on_message_complete so that an answer
** is handled outside llhttp.  We never pipeline: a byte after an answer, or
** any byte while idle, means the connection cannot be trusted; it closes.
**
** HTTPS (o.tls): each connection owns an rf_tls.  The request goes through
** rf_tls_write (held until the handshake ends), the records through raw
** writes counted in nw; the answer's plaintext comes to conn_parse from
** rf_tls_feed.  A target named with rf_fwd_expect() must prove that name.
*/
#include "rafting/forward.h"
#include "rafting/buf.h"
#include "rafting/tls.h"
#include "rafting/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#define RBUF_SIZE 65536
#define MAX_HEADER_BYTES (64u << 10)

enum { H_NONE, H_FIELD, H_VALUE }; /* header parsing state */
enum { K_CTYPE, K_RETRY, K_LOCATION, K_ALLOW, K_AUTHN, K_N };
static const char *const kept[K_N] = {"content-type", "retry-after",
                                      "location", "allow",
                                      "www-authenticate"};

typedef struct target target;
typedef struct conn conn;

typedef struct job {
  rf_fwd *f;
  target *t;
  conn *c;
  rf_fwd_cb cb;
  void *ud;
  uint64_t deadline;
  unsigned head : 1, idempotent : 1, retried : 1, got : 1, in_body : 1,
      done : 1, keep : 1;
  int code;   /* the answer's HTTP status */
  int err;    /* why parsing failed, when we know better than llhttp */
  int hstate;
  size_t hbytes;
  rf_buf out; /* the request, as sent */
  rf_buf field, value, body;
  char *kv[K_N];
} job;

struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_connect_t creq;
  uv_write_t wreq;
  rf_fwd *f;
  target *t;
  job *j;
  conn *prev, *next;   /* every connection of f */
  conn *iprev, *inext; /* idle ones of t */
  llhttp_t parser;
  int nhandles;
  unsigned connected : 1, reused : 1, idle : 1, writing : 1, closing : 1;
  rf_tls *tls;         /* HTTPS, else NULL */
  int nw;              /* HTTPS: record writes not yet completed */
};

typedef struct rawwr { /* HTTPS records */
  uv_write_t w;
  conn *c;
  uint8_t *p;
} rawwr;

struct target {
  target *next;
  char *host;
  int port;
  struct sockaddr_storage addr;
  char hosthdr[64]; /* Host header: "h:p" or "[v6]:p" */
  char name[32];    /* HTTPS: the name its certificate must carry, or "" */
  conn *idle;       /* most recently used first */
  int nidle;
};

struct rf_fwd {
  uv_loop_t *loop;
  uv_timer_t handle; /* never started: makes close (and done) asynchronous */
  rf_fwd_opts o;
  char *via;
  target *targets;
  conn *conns;
  int nconns, nopen;
  int handle_open, closing;
  void (*done)(void *);
  void *done_ud;
  char rbuf[RBUF_SIZE]; /* shared: on_read consumes it before returning */
};

static void conn_close(conn *c);

/* ---- small strings ----------------------------------------------------- */

static char *dupmem(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (d == NULL) return NULL;
  memcpy(d, s, n);
  d[n] = '\0';
  return d;
}

static int is_token(const char *s) {
  if (*s == '\0') return 0;
  for (; *s; s++)
    if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f ||
        strchr("()<>@,;:\\\"/[]?={}", *s))
      return 0;
  return 1;
}

static int is_value(const char *s) { return strpbrk(s, "\r\n") == NULL; }

/* The request-target in origin-form: an absolute-form one loses its scheme
** and authority (*slash: its path was empty, so "/" must go first).  NULL
** if empty, or on bytes a request line cannot carry. */
static const char *origin_form(const char *t, size_t len, size_t *olen,
                               int *slash) {
  const char *end;
  *slash = 0;
  if (t == NULL || len == 0) return NULL;
  end = t + len;
  for (const char *p = t; p < end; p++)
    if ((unsigned char)*p <= ' ' || (unsigned char)*p == 0x7f) return NULL;
  if (len > 7 && (strncasecmp(t, "http://", 7) == 0 ||
                  strncasecmp(t, "https://", 8) == 0)) {
    t = (const char *)memchr(t, '/', len) + 2;
    while (t < end && *t != '/' && *t != '?') t++;
    *slash = t == end || *t == '?';
  }
  *olen = (size_t)(end - t);
  return t;
}

/* ---- targets ----------------------------------------------------------- */

static int target_get(rf_fwd *f, const char *host, int port, target **out) {
  struct sockaddr_storage ss;
  target *t;
  int rc;
  if (host == NULL) return UV_EINVAL;
  for (t = f->targets; t; t = t->next)
    if (t->port == port && strcmp(t->host, host) == 0) return *out = t, 0;
  if (port <= 0) return UV_EINVAL;
  if ((rc = rf_addr_resolve(host, port, &ss)) != 0) return rc;
  if (strlen(host) > sizeof t->hosthdr - 10) return UV_EINVAL;
  if ((t = calloc(1, sizeof *t)) == NULL) return UV_ENOMEM;
  if ((t->host = dupmem(host, strlen(host))) == NULL) {
    free(t);
    return UV_ENOMEM;
  }
  t->port = port;
  t->addr = ss;
  rf_addr_format(t->hosthdr, sizeof t->hosthdr, host, port);
  t->next = f->targets;
  f->targets = t;
  return *out = t, 0;
}

static void idle_push(conn *c) {
  target *t = c->t;
  c->idle = 1;
  c->iprev = NULL;
  c->inext = t->idle;
  if (t->idle) t->idle->iprev = c;
  t->idle = c;
  t->nidle++;
}

static void idle_remove(conn *c) {
  target *t = c->t;
  if (!c->idle) return;
  c->idle = 0;
  if (c->iprev) c->iprev->inext = c->inext;
  else t->idle = c->inext;
  if (c->inext) c->inext->iprev = c->iprev;
  t->nidle--;
}

/* ---- jobs -------------------------------------------------------------- */

static void job_free(job *j) {
  rf_buf_free(&j->out);
  rf_buf_free(&j->field);
  rf_buf_free(&j->value);
  rf_buf_free(&j->body);
  for (int i = 0; i < K_N; i++) free(j->kv[i]);
  free(j);
}

/* The request line and headers, then the body, into j->out. */
static int job_build(job *j, const rf_http_req *req) {
  char num[32];
  size_t tlen = 0;
  int slash;
  const char *tg = origin_form(req->target, req->target_len, &tlen, &slash);
  const char *m = req->method, *ct = req->content_type;
  /* the caller's credentials go along unchanged: the leader checks the
  ** same token against the same list (src/http/auth.h) */
  const char *au = req->authorization;
  size_t aulen = au ? strlen(au) : 0;
  rf_buf *o = &j->out;
  if (m == NULL || !is_token(m) || tg == NULL || (ct && !is_value(ct)) ||
      (req->body_len && req->body == NULL) || (au && !is_value(au)))
    return UV_EINVAL;
  snprintf(num, sizeof num, "%zu", req->body_len);
  /* all at once: the appends below cannot fail */
  if (rf_buf_reserve(o, 128 + strlen(m) + tlen + strlen(j->t->hosthdr) +
                            strlen(j->f->via) + (ct ? strlen(ct) : 0) +
                            aulen + req->body_len) != 0)
    return UV_ENOMEM;
  rf_buf_str(o, m);
  rf_buf_str(o, slash ? " /" : " ");
  rf_buf_add(o, tg, tlen);
  rf_buf_str(o, " HTTP/1.1\r\nHost: ");
  rf_buf_str(o, j->t->hosthdr);
  rf_buf_str(o, "\r\n" RF_FWD_HEADER ": ");
  rf_buf_str(o, j->f->via);
  if (au) {
    rf_buf_str(o, "\r\nAuthorization: ");
    rf_buf_add(o, au, aulen);
  }
  rf_buf_str(o, "\r\nContent-Length: ");
  rf_buf_str(o, num);
  if (ct) {
    rf_buf_str(o, "\r\nContent-Type: ");
    rf_buf_str(o, ct);
  }
  rf_buf_str(o, "\r\n\r\n");
  rf_buf_add(o, req->body, req->body_len);
  return o->oom ? UV_ENOMEM : 0;
}

static job *job_new(rf_fwd *f, target *t, const rf_http_req *req,
                    rf_fwd_cb cb, void *ud, int *rc) {
  job *j = calloc(1, sizeof *j);
  if (j == NULL) return *rc = UV_ENOMEM, NULL;
  j->f = f;
  j->t = t;
  j->cb = cb;
  j->ud = ud;
  j->deadline = uv_now(f->loop) + (uint64_t)f->o.timeout_ms;
  j->head = req->method && strcmp(req->method, "HEAD") == 0;
  j->idempotent = j->head || (req->method && strcmp(req->method, "GET") == 0);
  if ((*rc = job_build(j, req)) != 0) {
    job_free(j);
    return NULL;
  }
  return j;
}

/* Run the callback (j is detached from any connection) and free j. */
static void job_finish(job *j, int status) {
  rf_fwd_resp r;
  if (status == 0) {
    r.status = j->code;
    r.content_type = j->kv[K_CTYPE];
    r.retry_after = j->kv[K_RETRY];
    r.location = j->kv[K_LOCATION];
    r.allow = j->kv[K_ALLOW];
    r.www_authenticate = j->kv[K_AUTHN];
    r.body = j->body.p ? j->body.p : "";
    r.body_len = j->body.n;
  }
  j->cb(j->ud, status, status == 0 ? &r : NULL);
  job_free(j);
}

/* ---- llhttp callbacks (parser->data is the conn) ----------------------- */

static job *job_of(llhttp_t *p) { return ((conn *)p->data)->j; }

static int jfail(job *j, int err) {
  j->err = err;
  return -1;
}

static int hdr_add(job *j, rf_buf *b, const char *at, size_t n) {
  if ((j->hbytes += n) > MAX_HEADER_BYTES) return jfail(j, RF_FWD_ETOOBIG);
  rf_buf_add(b, at, n);
  return b->oom ? jfail(j, UV_ENOMEM) : 0;
}

/* A header is complete: keep its value if it is one we relay (the first of
** its name; trailers are not relayed). */
static int hdr_keep(job *j) {
  rf_buf *v = &j->value;
  j->hstate = H_NONE;
  if (j->in_body || j->field.p == NULL) return 0;
  while (v->n && (v->p[v->n - 1] == ' ' || v->p[v->n - 1] == '\t'))
    v->n--;
  for (int i = 0; i < K_N; i++)
    if (j->kv[i] == NULL && strcasecmp(j->field.p, kept[i]) == 0)
      if ((j->kv[i] = dupmem(v->p ? v->p : "", v->n)) == NULL)
        return jfail(j, UV_ENOMEM);
  return 0;
}

static int on_message_begin(llhttp_t *p) {
  job *j = job_of(p);
  for (int i = 0; i < K_N; i++) free(j->kv[i]), j->kv[i] = NULL;
  rf_buf_reset(&j->body);
  j->hbytes = 0;
  j->hstate = H_NONE;
  j->in_body = 0;
  return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n) {
  job *j = job_of(p);
  if (j->hstate == H_VALUE && hdr_keep(j)) return -1;
  if (j->hstate != H_FIELD) rf_buf_reset(&j->field);
  j->hstate = H_FIELD;
  return hdr_add(j, &j->field, at, n);
}

static int on_header_field_complete(llhttp_t *p) {
  job *j = job_of(p);
  j->hstate = H_VALUE; /* llhttp may call no on_header_value: "" */
  rf_buf_reset(&j->value);
  return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n) {
  job *j = job_of(p);
  return hdr_add(j, &j->value, at, n);
}

static int on_headers_complete(llhttp_t *p) {
  job *j = job_of(p);
  size_t max = j->f->o.max_response_bytes;
  if (j->hstate == H_VALUE && hdr_keep(j)) return -1;
  j->in_body = 1;
  j->code = p->status_code;
  if (j->code == 101 || p->upgrade) return jfail(j, RF_FWD_EPROTO);
  if ((p->flags & F_CONTENT_LENGTH) && p->content_length > max && !j->head)
    return jfail(j, RF_FWD_ETOOBIG);
  if ((p->flags & F_CONTENT_LENGTH) && !j->head &&
      rf_buf_reserve(&j->body, (size_t)p->content_length) != 0)
    return jfail(j, UV_ENOMEM);
  return j->head ? 1 : 0; /* 1: no body, whatever the headers say */
}

static int on_body(llhttp_t *p, const char *at, size_t n) {
  job *j = job_of(p);
  if (j->body.n + n > j->f->o.max_response_bytes)
    return jfail(j, RF_FWD_ETOOBIG);
  rf_buf_add(&j->body, at, n);
  return j->body.oom ? jfail(j, UV_ENOMEM) : 0;
}

static int on_message_complete(llhttp_t *p) {
  job *j = job_of(p);
  if (j->hstate == H_VALUE && hdr_keep(j)) return -1; /* trailers */
  if (p->status_code / 100 == 1) return 0; /* interim: the answer follows */
  j->done = 1;
  j->keep = llhttp_should_keep_alive(p) != 0; /* flags reset on resume */
  return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_field_complete = on_header_field_complete,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- connections ------------------------------------------------------- */

static void maybe_done(rf_fwd *f) {
  if (!f->closing || f->handle_open || f->nconns > 0) return;
  void (*done)(void *) = f->done;
  void *ud = f->done_ud;
  for (target *t = f->targets, *next; t; t = next) {
    next = t->next;
    free(t->host);
    free(t);
  }
  free(f->via);
  free(f);
  if (done) done(ud);
}

static void on_conn_closed(uv_handle_t *h) {
  conn *c = h->data;
  rf_fwd *f = c->f;
  job *j = c->j;
  if (--c->nhandles > 0) return;
  if (c->prev) c->prev->next = c->next;
  else f->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  f->nconns--;
  rf_tls_free(c->tls);
  free(c);
  if (j) { /* still attached: rf_fwd_close() cancelled it */
    j->c = NULL;
    job_finish(j, RF_FWD_ECANCELED);
  }
  maybe_done(f);
}

static conn *conn_new(rf_fwd *f, target *t) {
  conn *c = calloc(1, sizeof *c);
  if (c == NULL) return NULL;
  c->f = f;
  c->t = t;
  uv_tcp_init(f->loop, &c->tcp);
  uv_timer_init(f->loop, &c->timer);
  c->tcp.data = c->timer.data = c->creq.data = c->wreq.data = c;
  c->nhandles = 2;
  llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
  c->parser.data = c;
  c->next = f->conns;
  if (f->conns) f->conns->prev = c;
  f->conns = c;
  f->nconns++;
  f->nopen++;
  return c;
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  c->f->nopen--;
  idle_remove(c);
  uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static job *detach(conn *c) {
  job *j = c->j;
  c->j = NULL;
  j->c = NULL;
  return j;
}

/* End c's job with an error; the connection goes with it. */
static void conn_fail(conn *c, int err) {
  job *j = detach(c);
  conn_close(c);
  job_finish(j, err);
}

static void on_timer(uv_timer_t *tm) {
  conn *c = tm->data;
  if (c->j == NULL) conn_close(c); /* idle too long */
  else conn_fail(c, c->connected ? RF_FWD_ETIMEDOUT : RF_FWD_ECONNECT);
}

static void timer_job(conn *c) {
  uint64_t now = uv_now(c->f->loop), end = c->j->deadline;
  uv_timer_start(&c->timer, on_timer, end > now ? end - now : 0, 0);
}

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  conn *c = h->data;
  (void)size;
  *buf = uv_buf_init(c->f->rbuf, RBUF_SIZE);
}

static void on_written(uv_write_t *w, int status);
static void conn_lost(conn *c);
static void conn_parse(conn *c, const char *d, size_t n);

static void on_raw_written(uv_write_t *w, int status) {
  rawwr *r = (rawwr *)w;
  conn *c = r->c;
  free(r->p);
  free(r);
  c->writing = --c->nw > 0;
  if (c->closing || status == 0 || c->j == NULL) return;
  conn_lost(c);
}

static int tls_send(void *ud, uint8_t *p, size_t n) {
  conn *c = ud;
  rawwr *r = malloc(sizeof *r);
  uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
  int rc = UV_ENOMEM;
  if (r != NULL) {
    r->c = c;
    r->p = p;
    rc = uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, on_raw_written);
  }
  if (rc != 0) {
    free(p);
    free(r);
    return rc;
  }
  c->nw++;
  c->writing = 1;
  return 0;
}

/* The answer's plaintext; bytes while idle mean the connection is bad. */
static int tls_recv(void *ud, const uint8_t *p, size_t n) {
  conn *c = ud;
  if (c->closing) return UV_ECANCELED;
  if (c->j == NULL) {
    conn_close(c);
    return UV_EPROTO;
  }
  c->j->got = 1;
  conn_parse(c, (const char *)p, n);
  return c->closing ? UV_ECANCELED : 0;
}

static int conn_write(conn *c) {
  if (c->tls != NULL) return rf_tls_write(c->tls, c->j->out.p, c->j->out.n);
  uv_buf_t b = uv_buf_init(c->j->out.p, (unsigned)c->j->out.n);
  int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_written);
  if (rc == 0) c->writing = 1;
  return rc;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void on_connect(uv_connect_t *cr, int status) {
  conn *c = cr->data;
  if (c->closing) return;
  if (status == 0 && c->f->o.tls != NULL) {
    rf_tls_io io = {c, tls_send, tls_recv};
    c->tls = rf_tls_new(c->f->o.tls, &io, *c->t->name ? c->t->name : NULL);
    if (c->tls == NULL) status = UV_ENOMEM;
  }
  if (status == 0) status = uv_read_start((uv_stream_t *)&c->tcp, on_alloc,
                                          on_read);
  if (status == 0) status = conn_write(c);
  if (status != 0) {
    conn_fail(c, RF_FWD_ECONNECT); /* nothing was sent */
    return;
  }
  c->connected = 1;
  uv_tcp_nodelay(&c->tcp, 1);
}

/* Put j on a new connection. */
static int job_dial(job *j) {
  conn *c = conn_new(j->f, j->t);
  int rc;
  if (c == NULL) return UV_ENOMEM;
  c->j = j;
  j->c = c;
  rc = uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&j->t->addr,
                      on_connect);
  if (rc != 0) {
    detach(c);
    conn_close(c);
    return rc;
  }
  timer_job(c);
  return 0;
}

/* Put j on the pooled connection c; on error c is left to the caller. */
static int job_reuse(job *j, conn *c) {
  int rc;
  idle_remove(c);
  c->j = j;
  j->c = c;
  if ((rc = conn_write(c)) != 0) {
    detach(c);
    return rc;
  }
  timer_job(c);
  return 0;
}

/* The connection broke under its job.  A GET or HEAD that got nothing back
** on a reused connection may have met a close we had not seen yet: retry
** it once on a fresh one.  Anything else may have taken effect. */
static void conn_lost(conn *c) {
  job *j = c->j;
  int rc;
  if (!c->reused || j->got || !j->idempotent || j->retried) {
    conn_fail(c, RF_FWD_ELOST);
    return;
  }
  detach(c);
  conn_close(c);
  j->retried = 1;
  if ((rc = job_dial(j)) != 0)
    job_finish(j, rc == UV_ENOMEM ? rc : RF_FWD_ECONNECT);
}

static void on_written(uv_write_t *w, int status) {
  conn *c = w->data;
  c->writing = 0;
  if (c->closing || status == 0 || c->j == NULL) return;
  conn_lost(c);
}

/* The answer is complete: pool the connection or close it, then report. */
static void conn_done(conn *c, int keep) {
  rf_fwd *f = c->f;
  job *j = detach(c);
  if (keep && !c->writing && !f->closing && c->t->nidle < f->o.max_idle) {
    llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
    c->parser.data = c;
    c->reused = 1;
    idle_push(c);
    uv_timer_start(&c->timer, on_timer, (uint64_t)f->o.idle_timeout_ms, 0);
  } else {
    conn_close(c);
  }
  job_finish(j, 0);
}

static void conn_parse(conn *c, const char *d, size_t n) {
  job *j = c->j;
  llhttp_errno_t e = llhttp_execute(&c->parser, d, n);
  if (e == HPE_OK) return;
  if (e == HPE_PAUSED && j->done) {
    int rest = llhttp_get_error_pos(&c->parser) != d + n; /* not ours */
    conn_done(c, j->keep && !rest);
    return;
  }
  conn_fail(c, j->err ? j->err : RF_FWD_EPROTO);
}

/* EOF or a read error.  An answer delimited by the close ends here. */
static void conn_eof(conn *c, ssize_t n) {
  job *j = c->j;
  if (n == UV_EOF && j->got) {
    llhttp_finish(&c->parser);
    if (j->done) {
      conn_done(c, 0);
      return;
    }
  }
  conn_lost(c);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *c = s->data;
  if (n == 0 || c->closing) return;
  if (c->j == NULL) {
    conn_close(c); /* closed by the leader while idle, or stray bytes */
  } else if (n < 0) {
    conn_eof(c, n);
  } else if (c->tls != NULL) {
    int ready = rf_tls_ready(c->tls);
    if (rf_tls_feed(c->tls, buf->base, (size_t)n) < 0 && !c->closing &&
        c->j != NULL) /* a failed handshake delivered nothing */
      ready ? conn_lost(c) : conn_fail(c, RF_FWD_ECONNECT);
  } else {
    c->j->got = 1;
    conn_parse(c, buf->base, (size_t)n);
  }
}

/* ---- the forwarder ----------------------------------------------------- */

void rf_fwd_opts_init(rf_fwd_opts *o) {
  memset(o, 0, sizeof *o);
  o->timeout_ms = 5000;
  o->idle_timeout_ms = 10000;
  o->max_idle = 8;
  o->max_response_bytes = (size_t)64 << 20;
  o->via = "1";
}

int rf_fwd_init(uv_loop_t *loop, rf_fwd **out, const rf_fwd_opts *o) {
  rf_fwd_opts def;
  rf_fwd *f;
  if (o == NULL) rf_fwd_opts_init(&def), o = &def;
  if (o->timeout_ms <= 0 || o->idle_timeout_ms <= 0 || o->max_idle < 0 ||
      o->max_response_bytes == 0 || o->via == NULL || *o->via == '\0' ||
      !is_value(o->via))
    return UV_EINVAL;
  if ((f = calloc(1, sizeof *f)) == NULL) return UV_ENOMEM;
  if ((f->via = dupmem(o->via, strlen(o->via))) == NULL) {
    free(f);
    return UV_ENOMEM;
  }
  f->loop = loop;
  f->o = *o;
  f->o.via = f->via;
  uv_timer_init(loop, &f->handle);
  f->handle.data = f;
  f->handle_open = 1;
  *out = f;
  return 0;
}

static void on_handle_closed(uv_handle_t *h) {
  rf_fwd *f = h->data;
  f->handle_open = 0;
  maybe_done(f);
}

void rf_fwd_close(rf_fwd *f, void (*done)(void *), void *ud) {
  if (f->closing) return;
  f->closing = 1;
  f->done = done;
  f->done_ud = ud;
  uv_close((uv_handle_t *)&f->handle, on_handle_closed);
  for (conn *c = f->conns; c; c = c->next) conn_close(c); /* jobs stay on */
}

int rf_fwd_send(rf_fwd *f, const char *host, int port, const rf_http_req *req,
                rf_fwd_cb cb, void *ud) {
  target *t;
  job *j;
  int rc;
  if (f->closing) return RF_FWD_ECANCELED;
  if (req == NULL || cb == NULL) return UV_EINVAL;
  if ((rc = target_get(f, host, port, &t)) != 0) return rc;
  if ((j = job_new(f, t, req, cb, ud, &rc)) == NULL) return rc;
  while (t->idle) { /* warmest first; one that fails here sent nothing */
    conn *c = t->idle;
    if (job_reuse(j, c) == 0) return 0;
    conn_close(c);
  }
  if ((rc = job_dial(j)) != 0) job_free(j);
  return rc;
}

int rf_fwd_expect(rf_fwd *f, const char *host, int port, const char *name) {
  target *t;
  int rc;
  if (name == NULL || strlen(name) >= sizeof t->name) return UV_EINVAL;
  if ((rc = target_get(f, host, port, &t)) != 0) return rc;
  snprintf(t->name, sizeof t->name, "%s", name);
  return 0;
}

void rf_fwd_relay(rf_http_req *req, const rf_fwd_resp *resp) {
  /* A value the server refuses (it cannot be sent) is left out. */
  if (resp->retry_after) rf_http_add_header(req, "Retry-After",
                                            resp->retry_after);
  if (resp->location) rf_http_add_header(req, "Location", resp->location);
  if (resp->allow) rf_http_add_header(req, "Allow", resp->allow);
  if (resp->www_authenticate)
    rf_http_add_header(req, "WWW-Authenticate", resp->www_authenticate);
  rf_http_respond(req, resp->status, resp->content_type, resp->body,
                  resp->body_len);
}

int rf_fwd_connections(const rf_fwd *f) { return f->nopen; }

/* A job is on a connection from dial to finish (a retry redials at once). */
int rf_fwd_pending(const rf_fwd *f) {
  int n = 0;
  for (const conn *c = f->conns; c; c = c->next) n += c->j != NULL;
  return n;
}

const char *rf_fwd_strerror(int status) {
  switch (status) {
  case 0: return "ok";
  case RF_FWD_ECONNECT: return "cannot connect to the leader";
  case RF_FWD_ETIMEDOUT: return "the leader did not answer in time";
  case RF_FWD_ELOST: return "connection to the leader lost";
  case RF_FWD_EPROTO: return "malformed answer from the leader";
  case RF_FWD_ETOOBIG: return "answer from the leader too large";
  case RF_FWD_ECANCELED: return "forwarding cancelled";
  default: return rf_strerror(status);
  }
}

int rf_fwd_http_status(int status) {
  switch (status) {
  case 0: return 200;
  case RF_FWD_ECONNECT:
  case RF_FWD_ECANCELED: return 503;
  case RF_FWD_ETIMEDOUT:
  case RF_FWD_ELOST: return 504;
  default: return 502;
  }
}
