/*
** test_forward.c -- the follower-to-leader forwarder on one uv loop.
**
** The "leader" is an rf_http server on a free loopback port; a "follower"
** rf_http server relays through the forwarder for the end-to-end test; a
** fake leader (raw uv TCP) plays the misbehaving cases.  Deadlines are uv
** timers, never sleeps.
*/
#define _GNU_SOURCE /* memmem, strcasestr */
#include "rafting/forward.h"
#include "rafting/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "check.h"

static uv_loop_t loop_s, *loop = &loop_s;
static uv_timer_t tick; /* for WAIT */

/* Run the loop until cond holds or ms pass. */
#define WAIT(cond, ms) CHECK_WAIT(loop, &tick, cond, ms)

static void set_flag(void *ud) { *(int *)ud = 1; }

/* ---- the leader: an rf_http server ------------------------------------- */

static rf_http_server *lead;
static int lead_port, lead_reqs, lead_held;
static char seen_method[16], seen_target[256], seen_fwd[64], seen_ctype[64];
static char seen_body[1024];
static size_t seen_body_len;

typedef struct later {
  uv_timer_t t;
  rf_http_req *req;
} later;

static void free_later(uv_handle_t *h) { free(h->data); }

static void on_later(uv_timer_t *t) {
  later *l = t->data;
  lead_held--;
  rf_http_respond(l->req, 200, "text/plain", "late", 4);
  uv_close((uv_handle_t *)t, free_later);
}

static void record(rf_http_req *r) {
  const char *fwd = rf_http_header(r, RF_FWD_HEADER, NULL);
  lead_reqs++;
  snprintf(seen_method, sizeof seen_method, "%s", r->method);
  snprintf(seen_target, sizeof seen_target, "%.*s", (int)r->target_len,
           r->target);
  snprintf(seen_fwd, sizeof seen_fwd, "%s", fwd ? fwd : "(none)");
  snprintf(seen_ctype, sizeof seen_ctype, "%s",
           r->content_type ? r->content_type : "(none)");
  seen_body_len = r->body_len < sizeof seen_body ? r->body_len : 0;
  memcpy(seen_body, r->body, seen_body_len);
}

/* /slow answers after 300 ms; anything else echoes with 201 and headers. */
static void lead_request(void *ud, rf_http_req *r) {
  char out[2048];
  (void)ud;
  record(r);
  if (strcmp(r->path, "/slow") == 0) {
    later *l = malloc(sizeof *l);
    l->req = r;
    lead_held++;
    uv_timer_init(loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, on_later, 300, 0);
    return;
  }
  int n = snprintf(out, sizeof out, "%s %.*s\n", r->method, (int)r->target_len,
                   r->target);
  memcpy(out + n, r->body, r->body_len); /* bodies here are small */
  rf_http_add_header(r, "Location", "/somewhere");
  rf_http_add_header(r, "Retry-After", "7");
  rf_http_add_header(r, "Allow", "GET, PUT");
  rf_http_respond(r, 201, r->content_type ? r->content_type : "text/plain",
                  out, (size_t)n + r->body_len);
}

static void lead_start(void) {
  rf_http_opts o;
  rf_http_opts_init(&o);
  o.on_request = lead_request;
  if (rf_http_start(loop, &o, &lead) != 0) exit(1);
  lead_port = rf_http_port(lead);
}

/* ---- forwarding and its results ---------------------------------------- */

typedef struct result {
  int done, status, code;
  char ctype[64], retry[16], location[64], allow[32];
  char body[2048];
  size_t body_len;
} result;

static int in_send;

static void fwd_cb(void *ud, int status, const rf_fwd_resp *resp) {
  result *r = ud;
  CHECK(!in_send); /* never from inside rf_fwd_send */
  CHECK(r->done == 0);
  r->done++;
  r->status = status;
  CHECK((status == 0) == (resp != NULL));
  if (resp == NULL) return;
  r->code = resp->status;
#define COPY(f, v) snprintf(r->f, sizeof r->f, "%s", v ? v : "(none)")
  COPY(ctype, resp->content_type);
  COPY(retry, resp->retry_after);
  COPY(location, resp->location);
  COPY(allow, resp->allow);
#undef COPY
  CHECK(resp->body[resp->body_len] == '\0');
  r->body_len = resp->body_len < sizeof r->body ? resp->body_len : 0;
  memcpy(r->body, resp->body, r->body_len);
}

static int send_to(rf_fwd *f, int port, const char *method,
                   const char *target, const char *ctype, const void *body,
                   size_t len, result *r) {
  rf_http_req q;
  int rc;
  memset(&q, 0, sizeof q);
  memset(r, 0, sizeof *r);
  q.method = method;
  q.target = target;
  q.target_len = strlen(target);
  q.content_type = ctype;
  q.body = body ? body : "";
  q.body_len = len;
  in_send = 1;
  rc = rf_fwd_send(f, "127.0.0.1", port, &q, fwd_cb, r);
  in_send = 0;
  memset(&q, 0xAA, sizeof q); /* the forwarder copied what it needs */
  return rc;
}

static rf_fwd *fwd_new(int timeout_ms, int max_idle, size_t max_resp) {
  rf_fwd_opts o;
  rf_fwd *f;
  rf_fwd_opts_init(&o);
  o.via = "node-2";
  if (timeout_ms) o.timeout_ms = timeout_ms;
  if (max_idle >= 0) o.max_idle = max_idle;
  if (max_resp) o.max_response_bytes = max_resp;
  if (rf_fwd_init(loop, &f, &o) != 0) exit(1);
  return f;
}

static void fwd_free(rf_fwd *f) {
  int done = 0;
  rf_fwd_close(f, set_flag, &done);
  CHECK(!done); /* asynchronous */
  WAIT(done, 2000);
  CHECK(done);
}

/* ---- tests against the real leader ------------------------------------- */

static void test_methods(void) {
  rf_fwd *f = fwd_new(0, -1, 0);
  result r;
  char bin[256];
  for (int i = 0; i < 256; i++) bin[i] = (char)i;

  CHECK(send_to(f, lead_port, "GET", "/kv/a%20b?x=1&stale", NULL, NULL, 0,
                &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && r.code == 201);
  CHECK(strcmp(seen_method, "GET") == 0);
  CHECK(strcmp(seen_target, "/kv/a%20b?x=1&stale") == 0);
  CHECK(strcmp(seen_fwd, "node-2") == 0);
  CHECK(strcmp(r.ctype, "text/plain") == 0);
  CHECK(strcmp(r.location, "/somewhere") == 0);
  CHECK(strcmp(r.retry, "7") == 0);
  CHECK(strcmp(r.allow, "GET, PUT") == 0);
  CHECK(r.body_len == 24 &&
        memcmp(r.body, "GET /kv/a%20b?x=1&stale\n", 24) == 0);

  CHECK(send_to(f, lead_port, "PUT", "/kv/bin?w=1", "application/octet-stream",
                bin, sizeof bin, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && r.code == 201);
  CHECK(strcmp(seen_method, "PUT") == 0);
  CHECK(strcmp(seen_ctype, "application/octet-stream") == 0);
  CHECK(seen_body_len == 256 && memcmp(seen_body, bin, 256) == 0);
  CHECK(strcmp(r.ctype, "application/octet-stream") == 0);
  CHECK(r.body_len == 16 + 256 && memcmp(r.body + 16, bin, 256) == 0);

  CHECK(send_to(f, lead_port, "POST", "/cmd/incr", "application/json",
                "{\"k\":1}", 7, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && r.code == 201);
  CHECK(seen_body_len == 7 && memcmp(seen_body, "{\"k\":1}", 7) == 0);
  CHECK(r.body_len == 22 &&
        memcmp(r.body, "POST /cmd/incr\n{\"k\":1}", 22) == 0);

  /* absolute-form targets go out in origin-form */
  CHECK(send_to(f, lead_port, "DELETE", "http://n1:8001/kv/x?y", NULL, NULL, 0,
                &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && strcmp(seen_target, "/kv/x?y") == 0);
  CHECK(send_to(f, lead_port, "GET", "HTTP://n1:8001?z", NULL, NULL, 0,
                &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && strcmp(seen_target, "/?z") == 0);

  CHECK(send_to(f, lead_port, "HEAD", "/kv/h", NULL, NULL, 0, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && r.code == 201 && r.body_len == 0);
  CHECK(strcmp(r.location, "/somewhere") == 0);

  /* one connection served them all */
  CHECK(rf_fwd_connections(f) == 1);
  CHECK(rf_http_connections(lead) == 1);
  fwd_free(f);
}

static void test_sync_errors(void) {
  rf_fwd *f = fwd_new(0, -1, 0);
  rf_fwd_opts o;
  rf_fwd *g;
  rf_http_req q;
  result r;
  memset(&q, 0, sizeof q);
  q.method = "GET";
  q.target = "/x";
  q.target_len = 2;
  q.body = "";
  CHECK(rf_fwd_send(f, "no-such-host", 80, &q, fwd_cb, &r) == UV_EINVAL);
  CHECK(rf_fwd_send(f, "127.0.0.1", 0, &q, fwd_cb, &r) == UV_EINVAL);
  CHECK(rf_fwd_send(f, "127.0.0.1", 70000, &q, fwd_cb, &r) == UV_EINVAL);
  CHECK(send_to(f, lead_port, "G T", "/x", NULL, NULL, 0, &r) == UV_EINVAL);
  CHECK(send_to(f, lead_port, "GET", "/x\r\nEvil: 1", NULL, NULL, 0, &r) ==
        UV_EINVAL);
  CHECK(send_to(f, lead_port, "GET", "", NULL, NULL, 0, &r) == UV_EINVAL);
  CHECK(send_to(f, lead_port, "PUT", "/x", "a\r\nb: c", "1", 1, &r) ==
        UV_EINVAL);
  rf_fwd_opts_init(&o);
  o.via = "a\nb";
  CHECK(rf_fwd_init(loop, &g, &o) == UV_EINVAL);
  rf_fwd_opts_init(&o);
  o.timeout_ms = 0;
  CHECK(rf_fwd_init(loop, &g, &o) == UV_EINVAL);
  WAIT(0, 20);
  CHECK(r.done == 0); /* no callback after a sync error */
  CHECK(rf_fwd_connections(f) == 0);
  CHECK(rf_fwd_http_status(RF_FWD_ECONNECT) == 503);
  CHECK(rf_fwd_http_status(RF_FWD_ELOST) == 504);
  CHECK(rf_fwd_http_status(RF_FWD_EPROTO) == 502);
  /* one error space: a libuv code is an RF_E* code */
  CHECK(strcmp(rf_fwd_strerror(UV_ENOMEM), rf_strerror(RF_ENOMEM)) == 0);
  CHECK(RF_FWD_ECONNECT != RF_SNAP_ECORRUPT && RF_FWD_ELOST < RF_E_BASE);
  fwd_free(f);
}

static void test_pool(void) {
  rf_fwd *f = fwd_new(0, 2, 0);
  result r[6];
  int n = 0;
  for (int i = 0; i < 20; i++) {
    CHECK(send_to(f, lead_port, "GET", "/kv/seq", NULL, NULL, 0, &r[0]) == 0);
    WAIT(r[0].done, 2000);
    CHECK(r[0].status == 0 && r[0].code == 201);
  }
  CHECK(rf_fwd_connections(f) == 1 && rf_http_connections(lead) == 1);
  for (int i = 0; i < 6; i++)
    CHECK(send_to(f, lead_port, "PUT", "/kv/par", NULL, "v", 1, &r[i]) == 0);
  CHECK(rf_fwd_connections(f) == 6); /* one pooled, five dialing */
  CHECK(rf_fwd_pending(f) == 6);
  WAIT(r[0].done + r[1].done + r[2].done + r[3].done + r[4].done + r[5].done ==
           6, 2000);
  for (int i = 0; i < 6; i++) n += r[i].status == 0 && r[i].code == 201;
  CHECK(n == 6);
  CHECK(rf_fwd_pending(f) == 0); /* answered: pooled connections hold none */
  CHECK(rf_fwd_connections(f) == 2); /* max_idle */
  WAIT(rf_http_connections(lead) == 2, 2000);
  CHECK(rf_http_connections(lead) == 2);
  fwd_free(f);
  WAIT(rf_http_connections(lead) == 0, 2000);
  CHECK(rf_http_connections(lead) == 0);
}

static void test_timeout(void) {
  rf_fwd *f = fwd_new(100, -1, 0);
  result r;
  uint64_t t0 = uv_now(loop);
  CHECK(send_to(f, lead_port, "PUT", "/slow", NULL, "v", 1, &r) == 0);
  CHECK(rf_fwd_pending(f) == 1);
  WAIT(r.done, 2000);
  CHECK(rf_fwd_pending(f) == 0);
  CHECK(r.status == RF_FWD_ETIMEDOUT);
  CHECK(rf_fwd_http_status(r.status) == 504);
  CHECK(uv_now(loop) - t0 >= 100);
  CHECK(rf_fwd_connections(f) == 0); /* the late answer must not be taken */
  WAIT(lead_held == 0, 2000);
  fwd_free(f);
}

static void test_refused(void) {
  uv_tcp_t t;
  struct sockaddr_in sa;
  struct sockaddr_storage ss;
  int len = sizeof ss, port, done = 0;
  rf_fwd *f = fwd_new(0, -1, 0);
  result r;
  uv_tcp_init(loop, &t);
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_bind(&t, (struct sockaddr *)&sa, 0);
  uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len);
  port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  t.data = &done;
  uv_close((uv_handle_t *)&t, NULL); /* bound, never listening: refused */
  CHECK(send_to(f, port, "PUT", "/kv/x", NULL, "v", 1, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == RF_FWD_ECONNECT);
  CHECK(rf_fwd_http_status(r.status) == 503);
  fwd_free(f);
}

/* ---- a follower that relays: rf_fwd_relay end to end ------------------- */

static rf_fwd *relay_fwd;

static void relay_cb(void *ud, int status, const rf_fwd_resp *resp) {
  rf_http_req *req = ud;
  if (status == 0) rf_fwd_relay(req, resp);
  else rf_http_json_error(req, rf_fwd_http_status(status), "fwd",
                          rf_fwd_strerror(status));
}

static void follower_request(void *ud, rf_http_req *r) {
  (void)ud;
  if (rf_fwd_send(relay_fwd, "127.0.0.1", lead_port, r, relay_cb, r) != 0)
    rf_http_json_error(r, 503, "no_leader", "cannot forward");
}

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t cr;
  uv_write_t wr;
  uv_buf_t out;
  char in[8192];
  size_t len;
  int eof;
} client;

static void cl_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  client *c = h->data;
  (void)size;
  *buf = uv_buf_init(c->in + c->len, (unsigned)(sizeof c->in - c->len));
}

static void cl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client *c = s->data;
  (void)buf;
  if (n > 0) c->len += (size_t)n;
  if (n < 0 && !c->eof) {
    c->eof = 1;
    uv_close((uv_handle_t *)s, NULL);
  }
}

static void cl_connected(uv_connect_t *cr, int status) {
  client *c = cr->data;
  CHECK(status == 0);
  uv_read_start((uv_stream_t *)&c->tcp, cl_alloc, cl_read);
  uv_write(&c->wr, (uv_stream_t *)&c->tcp, &c->out, 1, NULL);
}

static void test_relay(void) {
  static const char rq[] = "PUT /kv/k?v=1 HTTP/1.1\r\nHost: f\r\n"
                           "Content-Type: application/x-test\r\n"
                           "Content-Length: 5\r\nConnection: close\r\n\r\n"
                           "ab\0cd";
  rf_http_server *fol;
  rf_http_opts o;
  struct sockaddr_in sa;
  client c;
  int done = 0;
  relay_fwd = fwd_new(0, -1, 0);
  rf_http_opts_init(&o);
  o.on_request = follower_request;
  CHECK(rf_http_start(loop, &o, &fol) == 0);
  memset(&c, 0, sizeof c);
  c.tcp.data = c.cr.data = &c;
  c.out = uv_buf_init((char *)rq, sizeof rq - 1);
  uv_tcp_init(loop, &c.tcp);
  uv_ip4_addr("127.0.0.1", rf_http_port(fol), &sa);
  uv_tcp_connect(&c.cr, &c.tcp, (struct sockaddr *)&sa, cl_connected);
  WAIT(c.eof, 2000);
  CHECK(c.eof);
  c.in[c.len < sizeof c.in ? c.len : sizeof c.in - 1] = '\0';
  CHECK(strncmp(c.in, "HTTP/1.1 201 ", 13) == 0);
  CHECK(strcasestr(c.in, "\r\nContent-Type: application/x-test\r\n") != NULL);
  CHECK(strcasestr(c.in, "\r\nLocation: /somewhere\r\n") != NULL);
  CHECK(strcasestr(c.in, "\r\nRetry-After: 7\r\n") != NULL);
  CHECK(strcasestr(c.in, "\r\nAllow: GET, PUT\r\n") != NULL);
  CHECK(strcasestr(c.in, "\r\nContent-Length: 19\r\n") != NULL);
  CHECK(memmem(c.in, c.len, "\r\n\r\nPUT /kv/k?v=1\nab\0cd", 23) != NULL);
  CHECK(strcmp(seen_fwd, "node-2") == 0 && seen_body_len == 5);
  rf_http_close(fol, set_flag, &done);
  WAIT(done, 2000);
  fwd_free(relay_fwd);
}

/* ---- close cancels what is in flight ----------------------------------- */

static int cancel_done, cancel_cbs, cancel_resend;

static void cancel_cb(void *ud, int status, const rf_fwd_resp *resp) {
  rf_fwd *f = ud;
  rf_http_req q;
  result r;
  CHECK(!in_send && !cancel_done); /* every callback before done */
  CHECK(status == RF_FWD_ECANCELED && resp == NULL);
  memset(&q, 0, sizeof q);
  q.method = "GET";
  q.target = "/";
  q.target_len = 1;
  q.body = "";
  cancel_resend += rf_fwd_send(f, "127.0.0.1", lead_port, &q, fwd_cb, &r) ==
                   RF_FWD_ECANCELED;
  cancel_cbs++;
}

static void test_close_cancels(void) {
  rf_fwd *f = fwd_new(0, -1, 0);
  rf_http_req q;
  result r;
  int base = lead_reqs;
  memset(&q, 0, sizeof q);
  q.method = "GET";
  q.target = "/slow";
  q.target_len = 5;
  q.body = "";
  for (int i = 0; i < 3; i++)
    CHECK(rf_fwd_send(f, "127.0.0.1", lead_port, &q, cancel_cb, f) == 0);
  WAIT(lead_reqs == base + 3, 2000); /* all three held by the leader */
  CHECK(lead_reqs == base + 3);
  q.target = "/kv/dialing";
  q.target_len = 11;
  CHECK(rf_fwd_send(f, "127.0.0.1", lead_port, &q, cancel_cb, f) == 0);
  rf_fwd_close(f, set_flag, &cancel_done); /* the fourth is still dialing */
  CHECK(cancel_cbs == 0);                  /* not from inside close */
  CHECK(send_to(f, lead_port, "GET", "/", NULL, NULL, 0, &r) ==
        RF_FWD_ECANCELED);
  WAIT(cancel_done, 2000);
  CHECK(cancel_done && cancel_cbs == 4 && cancel_resend == 4);
  CHECK(r.done == 0);
  WAIT(lead_held == 0, 2000);
}

/* ---- a fake leader: raw TCP, scripted answers -------------------------- */

enum { M_GARBAGE, M_CLOSE, M_CHUNKED, M_EOFBODY, M_BIG, M_INTERIM,
       M_DROP_SECOND, M_CLOSE_IDLE, M_EXTRA, M_HUGE_HEADER };

static uv_tcp_t fake;
static int fake_port, fake_mode, fake_conns, fake_reqs;
static char fake_methods[64];

typedef struct fconn {
  uv_tcp_t tcp;
  char buf[8192];
  size_t len;
  int nreq;
} fconn;

typedef struct fwrite_s {
  uv_write_t w;
  fconn *c;
  int close_after;
  char data[];
} fwrite_s;

static void free_fconn(uv_handle_t *h) { free(h->data); }

static void fconn_close(fconn *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, free_fconn);
}

static void fake_written(uv_write_t *w, int status) {
  fwrite_s *fw = (fwrite_s *)w;
  (void)status;
  if (fw->close_after) fconn_close(fw->c);
  free(fw);
}

static void fake_send(fconn *c, const char *s, size_t n, int close_after) {
  fwrite_s *fw = malloc(sizeof *fw + n);
  uv_buf_t b = uv_buf_init(fw->data, (unsigned)n);
  memcpy(fw->data, s, n);
  fw->c = c;
  fw->close_after = close_after;
  if (uv_write(&fw->w, (uv_stream_t *)&c->tcp, &b, 1, fake_written) != 0)
    free(fw);
}

#define SEND(c, lit, cl) fake_send(c, lit, sizeof lit - 1, cl)
#define OK2 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static void fake_answer(fconn *c) {
  switch (fake_mode) {
  case M_GARBAGE: SEND(c, "HTTP/1.1 2x0 OK\r\n\r\n", 0); break;
  case M_CLOSE: fconn_close(c); break;
  case M_CHUNKED: /* in pieces, split inside the framing */
    SEND(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Ty", 0);
    SEND(c, "pe: text/x-chunks\r\n\r\n5\r\nhello\r\n7", 0);
    SEND(c, "\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n", 0);
    break;
  case M_EOFBODY:
    SEND(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil eof", 1);
    break;
  case M_BIG:
    SEND(c, "HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n", 0);
    break;
  case M_INTERIM:
    SEND(c, "HTTP/1.1 100 Continue\r\n\r\n" OK2, 0);
    break;
  case M_DROP_SECOND: /* answer the first request only, then vanish */
    if (c->nreq == 1) SEND(c, OK2, 0);
    else fconn_close(c);
    break;
  case M_CLOSE_IDLE: SEND(c, OK2, 1); break; /* keep-alive, then FIN */
  case M_EXTRA: SEND(c, OK2 "HTTP/1.1 200 OK\r\n", 0); break;
  case M_HUGE_HEADER: {
    static char h[70000];
    memset(h, 'a', sizeof h);
    SEND(c, "HTTP/1.1 200 OK\r\nX-Big: ", 0);
    fake_send(c, h, sizeof h, 0);
    SEND(c, "\r\nContent-Length: 0\r\n\r\n", 0);
    break;
  }
  }
}

/* A request is complete once its headers and Content-Length bytes are in. */
static void fake_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fconn *c = s->data;
  (void)buf;
  if (n < 0) {
    fconn_close(c);
    return;
  }
  c->len += (size_t)n;
  for (;;) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4), *cl;
    size_t hlen, blen = 0;
    if (end == NULL) return;
    hlen = (size_t)(end + 4 - c->buf);
    *end = '\0';
    if ((cl = strcasestr(c->buf, "\r\ncontent-length:")) != NULL)
      blen = strtoul(cl + 17, NULL, 10);
    *end = '\r';
    if (c->len < hlen + blen) return;
    fake_reqs++;
    c->nreq++;
    snprintf(fake_methods + strlen(fake_methods),
             sizeof fake_methods - strlen(fake_methods), "%.*s ",
             (int)strcspn(c->buf, " "), c->buf);
    memmove(c->buf, c->buf + hlen + blen, c->len - hlen - blen);
    c->len -= hlen + blen;
    fake_answer(c);
    if (uv_is_closing((uv_handle_t *)&c->tcp)) return;
  }
}

static void fake_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  fconn *c = h->data;
  (void)size;
  *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void fake_accept(uv_stream_t *l, int status) {
  fconn *c = calloc(1, sizeof *c);
  (void)status;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c;
  fake_conns++;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) == 0)
    uv_read_start((uv_stream_t *)&c->tcp, fake_alloc, fake_read);
  else
    fconn_close(c);
}

static void fake_start(void) {
  struct sockaddr_in sa;
  struct sockaddr_storage ss;
  int len = sizeof ss;
  uv_tcp_init(loop, &fake);
  uv_ip4_addr("127.0.0.1", 0, &sa);
  uv_tcp_bind(&fake, (struct sockaddr *)&sa, 0);
  if (uv_listen((uv_stream_t *)&fake, 16, fake_accept) != 0) exit(1);
  uv_tcp_getsockname(&fake, (struct sockaddr *)&ss, &len);
  fake_port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

static void fake_reset(int mode) {
  fake_mode = mode;
  fake_conns = fake_reqs = 0;
  fake_methods[0] = '\0';
}

/* One forward to the fake leader in the given mode. */
static void fake_one(rf_fwd *f, int mode, const char *method, result *r) {
  fake_reset(mode);
  CHECK(send_to(f, fake_port, method, "/kv/f", NULL, "v", 1, r) == 0);
  WAIT(r->done, 2000);
  CHECK(r->done);
}

static void test_bad_leaders(void) {
  rf_fwd *f = fwd_new(0, -1, 0), *small = fwd_new(0, -1, 8);
  result r;
  fake_one(f, M_GARBAGE, "PUT", &r);
  CHECK(r.status == RF_FWD_EPROTO && rf_fwd_http_status(r.status) == 502);
  fake_one(f, M_CLOSE, "GET", &r); /* fresh connection: no retry */
  CHECK(r.status == RF_FWD_ELOST && rf_fwd_http_status(r.status) == 504);
  CHECK(fake_reqs == 1 && fake_conns == 1);
  fake_one(f, M_BIG, "GET", &r);
  CHECK(r.status == RF_FWD_ETOOBIG && rf_fwd_http_status(r.status) == 502);
  fake_one(small, M_CHUNKED, "GET", &r); /* 12 bytes > 8, chunk by chunk */
  CHECK(r.status == RF_FWD_ETOOBIG);
  fake_one(f, M_HUGE_HEADER, "GET", &r);
  CHECK(r.status == RF_FWD_ETOOBIG);
  fake_one(f, M_EXTRA, "GET", &r); /* an answer, then bytes nobody asked for */
  CHECK(r.status == 0 && r.code == 200 && r.body_len == 2);
  CHECK(rf_fwd_connections(f) == 0); /* not pooled */
  fwd_free(small);
  fwd_free(f);
}

static void test_framings(void) {
  rf_fwd *f = fwd_new(0, -1, 0);
  result r;
  fake_one(f, M_CHUNKED, "GET", &r);
  CHECK(r.status == 0 && r.code == 200);
  CHECK(r.body_len == 12 && memcmp(r.body, "hello, world", 12) == 0);
  CHECK(strcmp(r.ctype, "text/x-chunks") == 0);
  CHECK(rf_fwd_connections(f) == 1); /* chunked keeps the connection */
  fake_one(f, M_EOFBODY, "GET", &r);
  CHECK(r.status == 0 && r.code == 200);
  CHECK(r.body_len == 9 && memcmp(r.body, "until eof", 9) == 0);
  fake_one(f, M_INTERIM, "POST", &r);
  CHECK(r.status == 0 && r.code == 200 && r.body_len == 2);
  fwd_free(f);
}

static void test_stale_pool(void) {
  rf_fwd *f = fwd_new(0, -1, 0);
  result r;
  /* a GET that meets a dead pooled connection is retried once */
  fake_one(f, M_DROP_SECOND, "GET", &r);
  CHECK(r.status == 0 && rf_fwd_connections(f) == 1);
  CHECK(send_to(f, fake_port, "GET", "/kv/f", NULL, NULL, 0, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && r.code == 200);
  CHECK(fake_conns == 2 && fake_reqs == 3);
  CHECK(strcmp(fake_methods, "GET GET GET ") == 0);

  /* a write is not: its outcome is unknown */
  fwd_free(f);
  f = fwd_new(0, -1, 0);
  fake_one(f, M_DROP_SECOND, "GET", &r);
  CHECK(r.status == 0 && rf_fwd_connections(f) == 1);
  CHECK(send_to(f, fake_port, "PUT", "/kv/f", NULL, "v", 1, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == RF_FWD_ELOST);
  CHECK(fake_conns == 1 && strcmp(fake_methods, "GET PUT ") == 0);

  /* the leader closes a pooled connection: dropped at once, not reused */
  fake_one(f, M_CLOSE_IDLE, "GET", &r);
  CHECK(r.status == 0);
  WAIT(rf_fwd_connections(f) == 0, 2000);
  CHECK(rf_fwd_connections(f) == 0);
  fake_mode = M_INTERIM;
  CHECK(send_to(f, fake_port, "PUT", "/kv/f", NULL, "v", 1, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && r.code == 200 && fake_conns == 2);
  fwd_free(f);
}

/* Closing from inside a callback: the connection it just pooled goes too. */
static int close_in_cb_done;

static void close_in_cb(void *ud, int status, const rf_fwd_resp *resp) {
  CHECK(status == 0 && resp->status == 201);
  rf_fwd_close(ud, set_flag, &close_in_cb_done);
  rf_fwd_close(ud, set_flag, &close_in_cb_done); /* twice is harmless */
}

static void test_close_in_callback(void) {
  rf_fwd *f = fwd_new(0, -1, 0);
  rf_http_req q;
  memset(&q, 0, sizeof q);
  q.method = "GET";
  q.target = "/kv/c";
  q.target_len = 5;
  q.body = "";
  CHECK(rf_fwd_send(f, "localhost", lead_port, &q, close_in_cb, f) == 0);
  WAIT(close_in_cb_done, 2000);
  CHECK(close_in_cb_done);
}

static void test_idle_expiry(void) {
  rf_fwd_opts o;
  rf_fwd *f;
  result r;
  rf_fwd_opts_init(&o);
  o.idle_timeout_ms = 50;
  CHECK(rf_fwd_init(loop, &f, &o) == 0);
  CHECK(send_to(f, lead_port, "GET", "/kv/i", NULL, NULL, 0, &r) == 0);
  WAIT(r.done, 2000);
  CHECK(r.status == 0 && rf_fwd_connections(f) == 1);
  WAIT(rf_fwd_connections(f) == 0, 2000);
  CHECK(rf_fwd_connections(f) == 0);
  fwd_free(f);
}

static void print_handle(uv_handle_t *h, void *arg) {
  (void)arg;
  fprintf(stderr, "left open: %s\n", uv_handle_type_name(h->type));
}

int main(void) {
  int done = 0;
  uv_loop_init(loop);
  uv_timer_init(loop, &tick);
  lead_start();
  fake_start();
  test_methods();
  test_sync_errors();
  test_pool();
  test_timeout();
  test_refused();
  test_relay();
  test_close_cancels();
  test_bad_leaders();
  test_framings();
  test_stale_pool();
  test_idle_expiry();
  test_close_in_callback();
  rf_http_close(lead, set_flag, &done);
  uv_close((uv_handle_t *)&fake, NULL);
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(done);
  if (uv_loop_close(loop) != 0) {
    uv_walk(loop, print_handle, NULL);
    CHECK(!"loop closed");
  }
  return check_summary("test_forward");
}
