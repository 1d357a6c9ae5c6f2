/*
** api.c -- the node's REST API (see api.h).
**
** A table of routes; each handler answers at once or parks the request
** until the node reports what it waits for.
*/
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "node_internal.h"
#include "rafting/buf.h"
#include "rafting/http.h"
#include "rafting/log.h"

struct rf_api {
  rf_node *node;
  rf_http_server *http;
  void (*stop_done)(void *);
  void *stop_ud;
};

typedef void (*route_fn)(rf_api *a, rf_http_req *req);

typedef struct route {
  const char *prefix;  /* path, or a prefix when it ends in '/' */
  const char *allow;   /* methods, for 405's Allow header */
  route_fn get, put, post, del;
} route;

static void respond_json(rf_http_req *req, int status, rf_buf *b) {
  if (b->oom) {
    rf_buf_free(b);
    rf_http_json_error(req, 500, "internal", "out of memory");
    return;
  }
  rf_http_respond(req, status, "application/json", b->p, b->n);
  rf_buf_free(b);
}

static void get_health(rf_api *a, rf_http_req *req) {
  (void)a;
  rf_http_respond(req, 200, "application/json", "{\"ok\":true}", 11);
}

static void get_status(rf_api *a, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  rf_node_status_json(a->node, &b);
  respond_json(req, 200, &b);
}

static const route routes[] = {
  {"/health", "GET", get_health, NULL, NULL, NULL},
  {"/status", "GET", get_status, NULL, NULL, NULL},
};

static const route *find_route(const rf_http_req *req) {
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    const char *p = routes[i].prefix;
    size_t n = strlen(p);
    if (p[n - 1] == '/' ? req->path_len >= n && memcmp(req->path, p, n) == 0
                        : req->path_len == n && memcmp(req->path, p, n) == 0)
      return &routes[i];
  }
  return NULL;
}

static route_fn method_fn(const route *r, const char *method) {
  if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) return r->get;
  if (strcmp(method, "PUT") == 0) return r->put;
  if (strcmp(method, "POST") == 0) return r->post;
  if (strcmp(method, "DELETE") == 0) return r->del;
  return NULL;
}

static void on_request(void *ud, rf_http_req *req) {
  rf_api *a = ud;
  const route *r = find_route(req);
  route_fn fn;
  if (r == NULL) {
    rf_http_json_error(req, 404, "not_found", "no such route");
    return;
  }
  if ((fn = method_fn(r, req->method)) == NULL) {
    char msg[96];
    snprintf(msg, sizeof(msg), "%s is not allowed here; use %s", req->method,
             r->allow);
    rf_http_add_header(req, "Allow", r->allow);
    rf_http_json_error(req, 405, "method_not_allowed", msg);
    return;
  }
  fn(a, req);
}

int rf_api_start(rf_node *node, uv_loop_t *loop, rf_api **out) {
  const rf_config *cfg = rf_node_config(node);
  const rf_node_conf *self = rf_config_node(cfg, rf_node_id(node));
  rf_http_opts o;
  rf_api *a = calloc(1, sizeof(*a));
  int rc;
  *out = NULL;
  if (a == NULL) return UV_ENOMEM;
  a->node = node;
  rf_http_opts_init(&o);
  o.host = self->http_host;
  o.port = self->http_port;
  o.max_body_bytes = cfg->max_body_bytes;
  o.max_header_bytes = cfg->max_header_bytes;
  o.max_url_bytes = cfg->max_url_bytes;
  o.max_connections = cfg->max_connections;
  o.idle_timeout_ms = cfg->idle_timeout_ms;
  o.request_timeout_ms = cfg->request_timeout_ms;
  o.on_request = on_request;
  o.ud = a;
  if ((rc = rf_http_start(loop, &o, &a->http)) < 0) {
    free(a);
    return rc;
  }
  *out = a;
  return 0;
}

static void on_http_closed(void *ud) {
  rf_api *a = ud;
  void (*done)(void *) = a->stop_done;
  void *dud = a->stop_ud;
  free(a);
  if (done) done(dud);
}

void rf_api_stop(rf_api *a, void (*done)(void *ud), void *ud) {
  a->stop_done = done;
  a->stop_ud = ud;
  rf_http_close(a->http, on_http_closed, a);
}

void rf_api_applied(rf_api *a, const raft_entry *e) {
  (void)a;
  (void)e;
}

void rf_api_read_ready(rf_api *a, const raft_read_state *rs) {
  (void)a;
  (void)rs;
}

void rf_api_leader_changed(rf_api *a) { (void)a; }
