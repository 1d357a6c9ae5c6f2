/*
** fuzz_http.c -- libFuzzer target: the HTTP server (src/http/server.c) fed
** arbitrary bytes from a client.
**
** One server and one uv loop live for the whole run.  Each input is
** written into one end of a socketpair whose other end the server adopts
** (rf_http_adopt); the client then shuts down its side, and the loop runs
** until the server has closed the connection.  The application answers
** with what it parsed (path, query pairs, headers, body), at once or, for
** paths under /later, from the next loop iteration -- or from on_abort when
** the connection died first.  Every request must be answered exactly once;
** ASan sees any use of a request after its answer.  Small limits make the
** 413/414/431 paths reachable.
*/
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rafting/http.h"

#define FUZZ_MAX_INPUT 65536 /* fits a socketpair's buffer: one write, no block */

static uv_loop_t loop;
static uv_check_t check;
static rf_http_server *srv;
static rf_http_req *held[64];
static int nheld;

static void fail(const char *what) {
  fprintf(stderr, "fuzz_http: %s\n", what);
  abort();
}

static void answer(rf_http_req *r) {
  char out[1024];
  const char *k, *v, *h;
  size_t kl, vl, hl = 0, n;
  n = (size_t)snprintf(out, sizeof out, "%s %.*s %zu ", r->method,
                       (int)(r->path_len > 200 ? 200 : r->path_len), r->path,
                       r->body_len);
  for (size_t i = 0; rf_http_query_at(r, i, &k, &kl, &v, &vl) && n < 600; i++)
    n += (size_t)snprintf(out + n, sizeof out - n, "[%.*s=%.*s]",
                          (int)(kl > 40 ? 40 : kl), k, (int)(vl > 40 ? 40 : vl),
                          v);
  if ((h = rf_http_header(r, "x-a", &hl)) != NULL && strlen(h) != hl)
    fail("header length");
  if (rf_http_query_get(r, "stale", &vl) && n < 900)
    n += (size_t)snprintf(out + n, sizeof out - n, "stale");
  if (r->body_len > 0 && r->body[r->body_len] != '\0') fail("body not ended");
  if (strncmp(r->path, "/err", 4) == 0) {
    rf_http_add_header(r, "Retry-After", "1");
    rf_http_json_error(r, 503, "later", out);
  } else {
    rf_http_add_header(r, "X-B", h ? h : "none");
    rf_http_respond(r, 200, "text/plain", out, n);
  }
}

static void on_request(void *ud, rf_http_req *r) {
  (void)ud;
  if (strncmp(r->path, "/later", 6) == 0 && nheld < 64) held[nheld++] = r;
  else answer(r);
}

static void on_abort(void *ud, rf_http_req *r) {
  (void)ud;
  for (int i = 0; i < nheld; i++)
    if (held[i] == r) {
      held[i] = held[--nheld];
      answer(r);
      return;
    }
  fail("on_abort for a request not held");
}

/* Answer held requests one loop iteration after they came. */
static void on_check(uv_check_t *c) {
  (void)c;
  while (nheld > 0) answer(held[--nheld]);
}

static void setup(void) {
  rf_http_opts o;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  uv_check_init(&loop, &check);
  uv_check_start(&check, on_check);
  uv_unref((uv_handle_t *)&check);
  rf_http_opts_init(&o);
  o.max_body_bytes = 4096;
  o.max_header_bytes = 1024;
  o.max_url_bytes = 512;
  o.max_pipeline = 4;
  o.on_request = on_request;
  o.on_abort = on_abort;
  if (rf_http_start(&loop, &o, &srv) != 0) fail("cannot start the server");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int sv[2];
  char sink[4096];
  if (srv == NULL) setup();
  if (size > FUZZ_MAX_INPUT) return -1;
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) fail("socketpair");
  if (rf_http_adopt(srv, sv[0]) != 0) fail("adopt");
  for (size_t off = 0; off < size;) {
    ssize_t w = write(sv[1], data + off, size - off);
    if (w < 0 && errno != EINTR) fail("write");
    if (w > 0) off += (size_t)w;
  }
  shutdown(sv[1], SHUT_WR);
  /* until the server closed its end: the client reads EOF */
  for (;;) {
    uv_run(&loop, UV_RUN_NOWAIT);
    ssize_t r = recv(sv[1], sink, sizeof sink, MSG_DONTWAIT);
    if (r == 0) break;
    if (r < 0 && errno != EAGAIN && errno != EINTR) break;
    if (r < 0) uv_run(&loop, UV_RUN_ONCE);
  }
  close(sv[1]);
  while (uv_run(&loop, UV_RUN_NOWAIT) && rf_http_connections(srv) > 0) {}
  if (nheld != 0) fail("a held request was never answered");
  return 0;
}
