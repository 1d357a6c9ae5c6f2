/*
** test_http.c -- the HTTP server against raw clients on the same uv loop.
**
** Each test starts a server on a free loopback port with the limits it
** needs, drives libuv TCP clients that write literal bytes and parse the
** answers with llhttp, and waits with uv timers (never sleep).
*/
#define _GNU_SOURCE /* memmem */
#include "rafting/http.h"
#include "rafting/metrics.h"
#include "rafting/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <llhttp.h>

#include "check.h"

static uv_loop_t loop_s, *loop = &loop_s;
static uv_timer_t tick; /* for WAIT */
static rf_http_server *srv;
static int port;

/* Run the loop until cond holds or ms pass. */
#define WAIT(cond, ms) CHECK_WAIT(loop, &tick, cond, ms)

/* ---- the application ---------------------------------------------------- */

static rf_http_req *held;
static int aborted;
static int order[16], norder;

typedef struct later {
  uv_timer_t t;
  rf_http_req *req;
  int ms;
} later;

static void free_later(uv_handle_t *h) { free(h->data); }

static void on_later(uv_timer_t *t) {
  later *l = t->data;
  order[norder++ & 15] = l->ms;
  rf_http_respond(l->req, 200, "text/plain", l->req->path, l->req->path_len);
  uv_close((uv_handle_t *)t, free_later);
}

static void answer_query(rf_http_req *r) {
  char out[512];
  size_t n = 0, pl = 9, ll = 9, el = 9;
  const char *stale = rf_http_query_get(r, "stale", &n);
  const char *prefix = rf_http_query_get(r, "prefix", &pl);
  const char *limit = rf_http_query_get(r, "limit", &ll);
  const char *x = rf_http_query_get(r, "x", NULL);
  const char *empty = rf_http_query_get(r, "empty", &el);
  int len = snprintf(out, sizeof out,
                     "plen=%zu stale=%s/%zu prefix=%s/%zu limit=%s x=%s "
                     "empty=%zu missing=%d q=%s",
                     r->path_len, stale ? "yes" : "no", n, prefix, pl, limit,
                     x, el, rf_http_query_get(r, "nope", NULL) == NULL,
                     r->query);
  (void)empty;
  rf_http_respond(r, 200, "text/plain", out, (size_t)len);
}

/* Routes: /async/<ms>, /hold, /bye (503, then close), /q..., /bin...,
** /hdr, /err, else echo. */
static void on_request(void *ud, rf_http_req *r) {
  char out[4096];
  (void)ud;
  if (strncmp(r->path, "/async/", 7) == 0) {
    later *l = malloc(sizeof *l);
    l->req = r;
    l->ms = atoi(r->path + 7);
    uv_timer_init(loop, &l->t);
    l->t.data = l;
    uv_timer_start(&l->t, on_later, (uint64_t)l->ms, 0);
  } else if (strcmp(r->path, "/hold") == 0) {
    held = r;
  } else if (strcmp(r->path, "/bye") == 0) {
    rf_http_close_after(r);
    rf_http_json_error(r, 503, "shutting_down", "bye");
  } else if (strncmp(r->path, "/q", 2) == 0) {
    answer_query(r);
  } else if (strncmp(r->path, "/bin", 4) == 0) {
    rf_http_respond(r, 200, "application/octet-stream", r->path, r->path_len);
  } else if (strcmp(r->path, "/hdr") == 0) {
    CHECK(rf_http_add_header(r, "Content-Length", "5") == UV_EINVAL);
    CHECK(rf_http_add_header(r, "X-Bad", "a\r\nb: c") == UV_EINVAL);
    CHECK(rf_http_add_header(r, "Bad Name", "x") == UV_EINVAL);
    CHECK(rf_http_add_header(r, "Location", "http://127.0.0.1:8002/kv/a") == 0);
    CHECK(rf_http_add_header(r, "Retry-After", "2") == 0);
    rf_http_json_error(r, 307, "redirect", "go \"there\"\n");
  } else {
    int n = snprintf(out, sizeof out, "%s %s ", r->method, r->path);
    size_t b = r->body_len < sizeof out - (size_t)n ? r->body_len
                                                     : sizeof out - (size_t)n;
    memcpy(out + n, r->body, b);
    rf_http_respond(r, 200, "text/plain", out, (size_t)n + b);
  }
}

static void on_abort(void *ud, rf_http_req *r) {
  (void)ud;
  (void)r;
  aborted++;
}

/* ---- server setup ------------------------------------------------------- */

static int closed_done;
static void on_closed(void *ud) { *(int *)ud = 1; }

static void start(void (*tweak)(rf_http_opts *)) {
  rf_http_opts o;
  rf_http_opts_init(&o);
  o.on_request = on_request;
  o.on_abort = on_abort;
  if (tweak) tweak(&o);
  int rc = rf_http_start(loop, &o, &srv);
  if (rc != 0) {
    fprintf(stderr, "rf_http_start: %s\n", uv_strerror(rc));
    exit(1);
  }
  port = rf_http_port(srv);
  held = NULL;
  aborted = norder = 0;
}

static void stop(void) {
  closed_done = 0;
  rf_http_close(srv, on_closed, &closed_done);
  WAIT(closed_done, 2000);
  CHECK(closed_done);
}

/* ---- a raw client ------------------------------------------------------- */

typedef struct resp {
  int status;
  char body[4096];
  size_t blen;
  char connection[32], retry[16], location[64], ctype[64];
} resp;

typedef struct client {
  uv_tcp_t tcp;
  uv_connect_t cr;
  llhttp_t p;
  int connected, eof, closed, raw_only;
  resp r[16];
  int n;
  char field[64];
  char raw[16384];
  size_t rawlen;
} client;

static int cl_field(llhttp_t *p, const char *at, size_t n) {
  client *c = p->data;
  size_t l = strlen(c->field);
  snprintf(c->field + l, sizeof c->field - l, "%.*s", (int)n, at);
  return 0;
}

static int cl_value(llhttp_t *p, const char *at, size_t n) {
  client *c = p->data;
  resp *r = &c->r[c->n & 15];
  char *dst = NULL;
  size_t cap = 0;
  if (!strcasecmp(c->field, "connection")) dst = r->connection, cap = 32;
  if (!strcasecmp(c->field, "retry-after")) dst = r->retry, cap = 16;
  if (!strcasecmp(c->field, "location")) dst = r->location, cap = 64;
  if (!strcasecmp(c->field, "content-type")) dst = r->ctype, cap = 64;
  if (dst) snprintf(dst + strlen(dst), cap - strlen(dst), "%.*s", (int)n, at);
  return 0;
}

static int cl_value_done(llhttp_t *p) {
  ((client *)p->data)->field[0] = '\0';
  return 0;
}

static int cl_headers(llhttp_t *p) {
  client *c = p->data;
  c->r[c->n & 15].status = p->status_code;
  return 0;
}

static int cl_body(llhttp_t *p, const char *at, size_t n) {
  client *c = p->data;
  resp *r = &c->r[c->n & 15];
  if (r->blen + n < sizeof r->body) memcpy(r->body + r->blen, at, n);
  r->blen += n;
  return 0;
}

static int cl_done(llhttp_t *p) {
  ((client *)p->data)->n++;
  return 0;
}

static const llhttp_settings_t cl_settings = {
    .on_header_field = cl_field,
    .on_header_value = cl_value,
    .on_header_value_complete = cl_value_done,
    .on_headers_complete = cl_headers,
    .on_body = cl_body,
    .on_message_complete = cl_done,
};

static void cl_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  static char mem[65536];
  (void)h;
  (void)size;
  *buf = uv_buf_init(mem, sizeof mem);
}

static void cl_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  client *c = s->data;
  if (n < 0) {
    c->eof = 1;
    uv_read_stop(s);
    return;
  }
  if (c->rawlen + (size_t)n < sizeof c->raw) {
    memcpy(c->raw + c->rawlen, buf->base, (size_t)n);
    c->rawlen += (size_t)n;
    c->raw[c->rawlen] = '\0';
  }
  if (!c->raw_only) llhttp_execute(&c->p, buf->base, (size_t)n);
}

static void cl_connected(uv_connect_t *cr, int status) {
  client *c = cr->data;
  if (status < 0) {
    c->eof = 1;
    return;
  }
  c->connected = 1;
  uv_read_start((uv_stream_t *)&c->tcp, cl_alloc, cl_read);
}

static void cl_open(client *c) {
  struct sockaddr_in a;
  memset(c, 0, sizeof *c);
  llhttp_init(&c->p, HTTP_RESPONSE, &cl_settings);
  c->p.data = c;
  uv_tcp_init(loop, &c->tcp);
  c->tcp.data = c->cr.data = c;
  uv_ip4_addr("127.0.0.1", port, &a);
  uv_tcp_connect(&c->cr, &c->tcp, (struct sockaddr *)&a, cl_connected);
}

static void cl_written(uv_write_t *w, int status) {
  (void)status;
  free(w);
}

static void cl_send(client *c, const void *d, size_t n) {
  uv_write_t *w = malloc(sizeof *w + n);
  memcpy(w + 1, d, n);
  uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
  uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, cl_written);
}

static void cl_sends(client *c, const char *s) { cl_send(c, s, strlen(s)); }

static void cl_closed(uv_handle_t *h) { ((client *)h->data)->closed = 1; }

static void cl_close(client *c) {
  if (!uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, cl_closed);
  WAIT(c->closed, 1000);
}

/* Connect, send s, wait for n answers (and EOF if eof). */
static void cl_run(client *c, const char *s, int n, int eof) {
  cl_open(c);
  cl_sends(c, s);
  WAIT(c->n >= n && (!eof || c->eof), 2000);
  CHECK(c->n == n);
  if (eof) CHECK(c->eof);
}

static int has(const resp *r, const char *s) {
  return memmem(r->body, r->blen, s, strlen(s)) != NULL;
}

/* ---- tests -------------------------------------------------------------- */

#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

static void test_keepalive(void) {
  client c;
  start(NULL);
  cl_run(&c, GET("/echo"), 1, 0);
  cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
  WAIT(c.n == 2, 2000);
  CHECK(c.n == 2 && !c.eof);
  CHECK(c.r[0].status == 200 && has(&c.r[0], "GET /echo "));
  CHECK(c.r[1].status == 200 && has(&c.r[1], "POST /echo abc"));
  CHECK(strcmp(c.r[0].ctype, "text/plain") == 0 && !c.r[0].connection[0]);
  CHECK(rf_http_connections(srv) == 1);
  cl_close(&c);
  stop();
}

/* Answers come out in request order although the handler answers the last
** request first. */
static void test_pipeline(void) {
  client c;
  start(NULL);
  cl_run(&c, GET("/async/60") GET("/async/30") GET("/async/5"), 3, 0);
  CHECK(has(&c.r[0], "/async/60") && has(&c.r[1], "/async/30") &&
        has(&c.r[2], "/async/5"));
  CHECK(norder == 3 && order[0] == 5 && order[1] == 30 && order[2] == 60);
  cl_close(&c);
  stop();
}

static void pipeline2(rf_http_opts *o) { o->max_pipeline = 2; }

/* More pipelined requests than max_pipeline: reading pauses, resumes. */
static void test_pipeline_limit(void) {
  client c;
  start(pipeline2);
  cl_run(&c, GET("/async/20") GET("/async/10") GET("/async/1") GET("/echo")
         GET("/async/5") GET("/bin"), 6, 0);
  CHECK(has(&c.r[0], "/async/20") && has(&c.r[1], "/async/10") &&
        has(&c.r[2], "/async/1") && has(&c.r[3], "GET /echo") &&
        has(&c.r[4], "/async/5") && has(&c.r[5], "/bin"));
  cl_close(&c);
  stop();
}

static void test_chunked(void) {
  client c;
  start(NULL);
  cl_open(&c);
  cl_sends(&c, "POST /echo HTTP/1.1\r\nHost: t\r\n"
               "Transfer-Encoding: chunked\r\n\r\n5\r\nhel");
  cl_sends(&c, "lo\r\n6;ext=1\r\n world\r\n");
  cl_sends(&c, "0\r\nX-Trailer: t\r\n\r\n" GET("/echo"));
  WAIT(c.n == 2, 2000);
  CHECK(c.n == 2 && c.r[0].status == 200);
  CHECK(has(&c.r[0], "POST /echo hello world") && has(&c.r[1], "GET /echo"));
  cl_close(&c);
  stop();
}

static void small_limits(rf_http_opts *o) {
  o->max_body_bytes = 64;
  o->max_url_bytes = 256;
  o->max_header_bytes = 1024;
}

static void test_limits(void) {
  client c;
  char big[4096];
  start(small_limits);
  /* 413 from Content-Length, before any body byte */
  cl_run(&c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 65\r\n\r\n", 1,
         1);
  CHECK(c.r[0].status == 413 && has(&c.r[0], "\"error\":\"body_too_large\""));
  CHECK(strcmp(c.r[0].ctype, "application/json") == 0);
  CHECK(strcmp(c.r[0].connection, "close") == 0);
  cl_close(&c);
  /* exactly at the limit is fine */
  snprintf(big, sizeof big, "PUT /echo HTTP/1.1\r\nContent-Length: 64\r\n\r\n"
           "%064d", 7);
  cl_run(&c, big, 1, 0);
  CHECK(c.r[0].status == 200);
  cl_close(&c);
  /* 413 while reading a chunked body */
  cl_run(&c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
             "1e\r\n012345678901234567890123456789\r\n"
             "1e\r\n012345678901234567890123456789\r\n"
             "1e\r\n012345678901234567890123456789\r\n0\r\n\r\n", 1, 1);
  CHECK(c.r[0].status == 413 && has(&c.r[0], "larger than 64 bytes"));
  cl_close(&c);
  /* 414 */
  snprintf(big, sizeof big, "GET /%0300d HTTP/1.1\r\n\r\n", 0);
  cl_run(&c, big, 1, 1);
  CHECK(c.r[0].status == 414 && has(&c.r[0], "\"url_too_long\""));
  cl_close(&c);
  /* 431 */
  snprintf(big, sizeof big, "GET / HTTP/1.1\r\nX-Big: %01100d\r\n\r\n", 0);
  cl_run(&c, big, 1, 1);
  CHECK(c.r[0].status == 431 && has(&c.r[0], "\"headers_too_large\""));
  cl_close(&c);
  /* many small headers add up too */
  strcpy(big, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < 150; i++) strcat(big, "X-A: b\r\n");
  strcat(big, "\r\n");
  cl_run(&c, big, 1, 1);
  CHECK(c.r[0].status == 431);
  cl_close(&c);
  stop();
}

/* Each malformed request gets a JSON 400 and a close; the server goes on. */
static void test_malformed(void) {
  static const char *const bad[] = {
      "HELLO WORLD\r\n\r\n",
      "GET / HTTP/9.9\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Header\r\n\r\n",
      "GET / HTTP/1.1\r\nX: a\x01" "b\r\n\r\n",
      "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabcdef\r\n0\r\n\r\n",

      "POST /echo HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
      "POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n",
      "GET /kv/%zz HTTP/1.1\r\n\r\n",
      "GET /kv/%4 HTTP/1.1\r\n\r\n",
  };
  client c;
  start(NULL);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cl_run(&c, bad[i], 1, 1);
    if (c.r[0].status != 400)
      fprintf(stderr, "case %zu: %d %.*s\n", i, c.r[0].status,
              (int)c.r[0].blen, c.r[0].body);
    CHECK(c.r[0].status == 400 && has(&c.r[0], "{\"error\":\"bad_request\""));
    CHECK(strcmp(c.r[0].connection, "close") == 0);
    cl_close(&c);
  }
  /* the bytes after chunk data checked across reads */
  static const char *const split[][2] = {{"3\r\nabc\r", "X0\r\n\r\n"},
                                         {"3\r\nabc", "XY0\r\n\r\n"}};
  for (int i = 0; i < 2; i++) {
    cl_open(&c);
    cl_sends(&c, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    cl_sends(&c, split[i][0]);
    WAIT(0, 30);
    cl_sends(&c, split[i][1]);
    WAIT(c.eof, 2000);
    CHECK(c.n == 1 && c.r[0].status == 400 && has(&c.r[0], "CRLF"));
    cl_close(&c);
  }
  /* a body longer than Content-Length: the rest is a (bad) next request */
  cl_run(&c, "POST /echo HTTP/1.1\r\nContent-Length: 3\r\n\r\n"
             "abcGARBAGE\r\n\r\n", 2, 1);
  CHECK(c.r[0].status == 200 && has(&c.r[0], "POST /echo abc"));
  CHECK(c.r[1].status == 400);
  cl_close(&c);
  cl_run(&c, GET("/echo"), 1, 0); /* still healthy */
  CHECK(c.r[0].status == 200);
  cl_close(&c);
  stop();
}

/* An answer the server makes itself (a parse error) is timed from when it
** was made: the duration histogram must not record the clock's epoch. */
static void test_error_duration(void) {
  client c;
  rf_histo *h = &rf_metrics_g.http_duration[RF_ROUTE_OTHER];
  uint64_t n = 0;
  rf_metrics_reset();
  start(NULL);
  cl_run(&c, "HELLO WORLD\r\n\r\n", 1, 1);
  CHECK(c.r[0].status == 400);
  cl_close(&c);
  stop();
  for (int i = 0; i <= RF_HISTO_BUCKETS; i++) n += h->n[i];
  CHECK(n == 1);
  CHECK(h->sum_ns < 10000000000ull); /* under 10 s, not the uptime */
}

static void slow_limits(rf_http_opts *o) { o->request_timeout_ms = 200; }

typedef struct dripper {
  uv_timer_t t;
  client *c;
  const char *s;
} dripper;

static void on_drip(uv_timer_t *t) {
  dripper *d = t->data;
  if (*d->s && !d->c->eof) cl_send(d->c, d->s++, 1);
  else uv_timer_stop(t);
}

/* One byte every 50 ms: the whole request never arrives in 200 ms. */
static void test_slow_request(void) {
  client c;
  dripper d = {.c = &c, .s = GET("/echo")};
  start(slow_limits);
  cl_open(&c);
  uv_timer_init(loop, &d.t);
  d.t.data = &d;
  uint64_t t0 = uv_now(loop);
  uv_timer_start(&d.t, on_drip, 50, 50);
  WAIT(c.eof, 3000);
  CHECK(c.eof && c.n == 1 && c.r[0].status == 408);
  CHECK(has(&c.r[0], "\"request_timeout\""));
  CHECK(uv_now(loop) - t0 < 1500); /* far less than the 1.6 s it would take */
  uv_close((uv_handle_t *)&d.t, NULL);
  cl_close(&c);
  /* A slow but complete request within the limit is fine. */
  cl_open(&c);
  WAIT(c.connected, 1000);
  cl_sends(&c, "GET /echo HTTP/1.1\r\n");
  WAIT(0, 100);
  cl_sends(&c, "Host: t\r\n\r\n");
  WAIT(c.n == 1, 1000);
  CHECK(c.n == 1 && c.r[0].status == 200);
  cl_close(&c);
  stop();
}

static void idle_limits(rf_http_opts *o) { o->idle_timeout_ms = 100; }

static void test_idle(void) {
  client c;
  start(idle_limits);
  cl_run(&c, GET("/echo"), 1, 0);
  WAIT(c.eof, 2000);
  CHECK(c.eof && c.n == 1);
  cl_close(&c);
  /* a request held by the application is not idle */
  cl_run(&c, GET("/hold"), 0, 0);
  WAIT(held != NULL, 1000);
  WAIT(0, 250);
  CHECK(!c.eof && !aborted);
  rf_http_respond(held, 204, NULL, NULL, 0);
  WAIT(c.n == 1, 1000);
  CHECK(c.r[0].status == 204);
  cl_close(&c);
  stop();
}

static void two_conns(rf_http_opts *o) { o->max_connections = 2; }

static void test_max_connections(void) {
  client a, b, c;
  start(two_conns);
  cl_run(&a, GET("/echo"), 1, 0);
  cl_run(&b, GET("/echo"), 1, 0);
  cl_open(&c);
  WAIT(c.n == 1 && c.eof, 2000);
  CHECK(c.n == 1 && c.eof && c.r[0].status == 503);
  CHECK(has(&c.r[0], "\"too_many_connections\"") && !strcmp(c.r[0].retry, "1"));
  CHECK(rf_http_connections(srv) == 2);
  cl_close(&c);
  cl_close(&a);
  WAIT(rf_http_connections(srv) == 1, 1000);
  cl_run(&c, GET("/echo"), 1, 0);
  CHECK(c.r[0].status == 200);
  cl_close(&b);
  cl_close(&c);
  stop();
}

static void test_close_and_http10(void) {
  client c;
  start(NULL);
  cl_run(&c, "GET /echo HTTP/1.0\r\n\r\n", 1, 1);
  CHECK(c.r[0].status == 200 && !strcmp(c.r[0].connection, "close"));
  cl_close(&c);
  cl_run(&c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1, 0);
  CHECK(!strcmp(c.r[0].connection, "keep-alive"));
  cl_sends(&c, "GET /echo HTTP/1.0\r\n\r\n");
  WAIT(c.eof, 2000);
  CHECK(c.n == 2 && c.eof);
  cl_close(&c);
  /* Connection: close; what follows it is ignored */
  cl_run(&c, "GET /async/20 HTTP/1.1\r\nConnection: close\r\n\r\n"
             GET("/echo"), 1, 1);
  CHECK(has(&c.r[0], "/async/20") && !strcmp(c.r[0].connection, "close"));
  cl_close(&c);
  /* the application closes after an answer: earlier answers still go
  ** out, later requests get none */
  cl_run(&c, GET("/async/20") GET("/bye") GET("/echo"), 2, 1);
  CHECK(c.n == 2 && has(&c.r[0], "/async/20") && !c.r[0].connection[0]);
  CHECK(c.r[1].status == 503 && !strcmp(c.r[1].connection, "close"));
  cl_close(&c);
  /* Upgrade is not supported: answered, then closed */
  cl_run(&c, "GET /echo HTTP/1.1\r\nConnection: Upgrade\r\n"
             "Upgrade: websocket\r\n\r\n", 1, 1);
  CHECK(c.r[0].status == 200);
  cl_close(&c);
  stop();
}

/* A client that leaves before its answer: on_abort, then the late answer
** only frees the request (ASan checks the rest). */
static void test_disconnect(void) {
  client c;
  start(NULL);
  cl_run(&c, GET("/async/30") GET("/hold"), 0, 0);
  WAIT(held != NULL, 1000);
  cl_close(&c);
  WAIT(aborted == 2, 1000);
  CHECK(aborted == 2); /* /async/30 and /hold */
  rf_http_respond(held, 200, "text/plain", "late", 4);
  WAIT(norder == 1, 1000); /* /async/30 answers a dead connection too */
  /* the same when the server closes under a held request */
  held = NULL;
  cl_run(&c, GET("/hold"), 0, 0);
  WAIT(held != NULL, 1000);
  stop();
  CHECK(aborted == 3);
  WAIT(c.eof, 1000);
  CHECK(c.eof);
  rf_http_respond(held, 200, "text/plain", "late", 4);
  cl_close(&c);
}

static void test_path_and_query(void) {
  client c;
  start(NULL);
  cl_run(&c, GET("/q/a%00b%2Fc?stale&prefix=a%20b&limit=5&x=1+2&empty=&&"),
         1, 0);
  CHECK(has(&c.r[0], "plen=8 stale=yes/0 prefix=a b/3 limit=5 x=1 2 empty=0 "
                     "missing=1 q=stale&prefix=a%20b&limit=5&x=1+2&empty=&&"));
  cl_sends(&c, GET("/bin/%00%ff%2b+"));
  WAIT(c.n == 2, 1000);
  CHECK(c.r[1].blen == 9 && !memcmp(c.r[1].body, "/bin/\0\xff++", 9));
  cl_sends(&c, GET("http://example.com/q/x?x=y"));
  WAIT(c.n == 3, 1000);
  CHECK(has(&c.r[2], "plen=4 stale=no"));
  cl_close(&c);
  stop();
}

static void test_headers_out(void) {
  client c;
  start(NULL);
  cl_run(&c, GET("/hdr"), 1, 0);
  CHECK(c.r[0].status == 307 && !strcmp(c.r[0].retry, "2"));
  CHECK(!strcmp(c.r[0].location, "http://127.0.0.1:8002/kv/a"));
  CHECK(has(&c.r[0], "{\"error\":\"redirect\",\"message\":\"go \\\"there\\\""
                     "\\u000a\"}"));
  cl_close(&c);
  stop();
}

static void test_expect_and_head(void) {
  client c;
  start(NULL);
  cl_run(&c, "PUT /echo HTTP/1.1\r\nContent-Length: 5\r\n"
             "Expect: 100-continue\r\n\r\n", 1, 0);
  CHECK(c.r[0].status == 100);
  cl_sends(&c, "hello");
  WAIT(c.n == 2, 1000);
  CHECK(c.r[1].status == 200 && has(&c.r[1], "PUT /echo hello"));
  cl_close(&c);
  /* HEAD: the length of the body, not the body */
  cl_open(&c);
  c.raw_only = 1;
  cl_sends(&c, "HEAD /echo HTTP/1.1\r\n\r\n" GET("/echo"));
  WAIT(strstr(c.raw, "GET /echo ") != NULL, 1000);
  CHECK(strstr(c.raw, "Content-Length: 11\r\n"));
  char *second = strstr(c.raw, "\r\n\r\n");
  CHECK(second && strncmp(second + 4, "HTTP/1.1 200 OK\r\n", 17) == 0);
  cl_close(&c);
  stop();
}

static void test_json_quote(void) {
  char out[128];
  size_t n = rf_json_quote(out, sizeof out, "a\"b\\c\n\t\x01\x7f", 9);
  CHECK(!strcmp(out, "\"a\\\"b\\\\c\\u000a\\u0009\\u0001\x7f\"") &&
        n == strlen(out));
  /* valid UTF-8 passes; broken, overlong and surrogate bytes are escaped */
  rf_json_quote(out, sizeof out, "\xc3\xa9\xff\xc0\xaf\xed\xa0\x80", 8);
  CHECK(!strcmp(out, "\"\xc3\xa9\\u00ff\\u00c0\\u00af\\u00ed\\u00a0\\u0080\""));
  rf_json_quote(out, sizeof out, "\xf0\x9f\x98\x80\0", 5);
  CHECK(!memcmp(out, "\"\xf0\x9f\x98\x80\\u0000\"", 12));
  /* truncation is safe and reports the full length */
  n = rf_json_quote(out, 4, "abcdef", 6);
  CHECK(n == 8 && !strcmp(out, "\"ab"));
  CHECK(rf_json_quote(NULL, 0, "x", 1) == 3);
}

static void test_start_errors(void) {
  rf_http_opts o;
  rf_http_server *s2;
  start(NULL);
  rf_http_opts_init(&o);
  o.on_request = on_request;
  o.port = port;
  CHECK(rf_http_start(loop, &o, &s2) == UV_EADDRINUSE);
  o.host = "not-an-ip";
  CHECK(rf_http_start(loop, &o, &s2) == UV_EINVAL);
  o.host = "::1";
  o.on_request = NULL;
  CHECK(rf_http_start(loop, &o, &s2) == UV_EINVAL);
  stop();
}

/* Read what fd has into buf (NUL-terminated); 1 once at EOF or full. */
static int read_to_eof(int fd, char *buf, size_t cap, size_t *got) {
  ssize_t r = 1;
  while (*got < cap - 1 &&
         (r = recv(fd, buf + *got, cap - 1 - *got, MSG_DONTWAIT)) > 0)
    *got += (size_t)r;
  buf[*got] = '\0';
  return r == 0 || *got == cap - 1;
}

/* rf_http_adopt: a connected socket is served like an accepted one. */
static void test_adopt(void) {
  int sv[2];
  char buf[512];
  size_t got = 0;
  static const char req[] = "GET /adopted HTTP/1.1\r\nConnection: close\r\n\r\n";
  start(NULL);
  CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  CHECK(rf_http_adopt(srv, sv[0]) == 0);
  CHECK(write(sv[1], req, sizeof req - 1) == (ssize_t)(sizeof req - 1));
  WAIT(read_to_eof(sv[1], buf, sizeof buf, &got), 2000);
  CHECK(read_to_eof(sv[1], buf, sizeof buf, &got));
  CHECK(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
  CHECK(strstr(buf, "GET /adopted") != NULL);
  close(sv[1]);
  CHECK(rf_http_adopt(srv, -1) != 0); /* not a socket: an error, no conn */
  stop();
}

int main(void) {
  uv_loop_init(loop);
  uv_timer_init(loop, &tick);
  test_json_quote();
  test_keepalive();
  test_pipeline();
  test_pipeline_limit();
  test_chunked();
  test_limits();
  test_malformed();
  test_error_duration();
  test_slow_request();
  test_idle();
  test_max_connections();
  test_close_and_http10();
  test_disconnect();
  test_path_and_query();
  test_headers_out();
  test_expect_and_head();
  test_start_errors();
  test_adopt();
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
  return check_summary("test_http");
}
