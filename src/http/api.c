/*
** api.c -- the node's REST API (see api.h).
**
** Routing and answers.  Whether a request runs here or goes to the leader
** is decided first (route_to_leader); writes become log entries and wait in
** waits.c for their index to apply; linearizable reads wait for a ReadIndex
** round and then for the state machine to catch up to it.
*/
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "http/api.h"
#include "http/waits.h"
#include "node_internal.h"
#include "rafting/buf.h"
#include "rafting/forward.h"
#include "rafting/http.h"
#include "rafting/log.h"
#include "rafting/sm.h"

#define RANGE_LIMIT_DEFAULT 100
#define RANGE_LIMIT_MAX 10000

struct rf_api {
  rf_node *node;
  rf_http_server *http;
  rf_fwd *fwd;
  rf_waits *waits;
  int closing;
  void (*stop_done)(void *);
  void *stop_ud;
};

typedef void (*route_fn)(rf_api *a, rf_http_req *req);

typedef struct route {
  const char *prefix;  /* the path, or a prefix when it ends in '/' */
  const char *allow;   /* methods, for 405's Allow header */
  route_fn get, put, post, del;
} route;

/* ------------------------------------------------------------ answers */

static void respond_buf(rf_http_req *req, int status, const char *type,
                        rf_buf *b) {
  if (b->oom) {
    rf_buf_free(b);
    rf_http_json_error(req, 500, "internal", "out of memory");
    return;
  }
  rf_http_respond(req, status, type, b->p ? b->p : "", b->n);
  rf_buf_free(b);
}

static void retry_later(rf_http_req *req, int status, const char *code,
                        const char *msg) {
  rf_http_add_header(req, "Retry-After", "1");
  rf_http_json_error(req, status, code, msg);
}

static int has_flag(const rf_http_req *req, const char *name) {
  size_t n;
  return rf_http_query_get(req, name, &n) != NULL;
}

static uint64_t now_ms(void) {
  struct timeval tv;
  gettimeofday(&tv, NULL);
  return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/* ------------------------------------------------------------ leader */

static int is_leader(rf_api *a) {
  return raft_role_of(rf_node_core(a->node)) == RAFT_LEADER &&
         !rf_node_failed(a->node);
}

static void on_forwarded(void *ud, int status, const rf_fwd_resp *resp) {
  rf_http_req *req = ud;
  int write = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
  int http = rf_fwd_http_status(status);
  if (status == 0) {
    rf_fwd_relay(req, resp);
  } else if (http == 504 && write) {
    char msg[160];
    snprintf(msg, sizeof(msg), "forwarding to the leader: %s; the write may "
             "still commit", rf_fwd_strerror(status));
    rf_http_json_error(req, 504, "outcome_unknown", msg);
  } else if (http == 502) {
    rf_http_json_error(req, 502, "bad_gateway", rf_fwd_strerror(status));
  } else {
    retry_later(req, 503, "leader_unreachable", rf_fwd_strerror(status));
  }
}

/* Send req to the leader (or a 307 there with ?redirect).  1 if req was
** taken care of, 0 if this node is the leader and must serve it. */
static int route_to_leader(rf_api *a, rf_http_req *req) {
  raft *core = rf_node_core(a->node);
  uint64_t leader = raft_leader(core);
  const rf_node_conf *lc;
  size_t n;
  if (is_leader(a)) return 0;
  lc = leader ? rf_config_node(rf_node_config(a->node), leader) : NULL;
  if (lc == NULL) {
    retry_later(req, 503, "no_leader", "no leader is known right now; retry");
    return 1;
  }
  if (rf_http_header(req, RF_FWD_HEADER, &n) != NULL) {
    /* one hop only: the sender thought we lead, and we do not any more */
    retry_later(req, 503, "not_leader", "leadership moved; retry");
    return 1;
  }
  if (has_flag(req, "redirect")) {
    rf_buf loc;
    rf_buf_init(&loc);
    rf_buf_printf(&loc, "http://%s:%d", lc->http_host, lc->http_port);
    rf_buf_add(&loc, req->target, req->target_len);
    rf_http_add_header(req, "Location", loc.p ? loc.p : "/");
    rf_buf_free(&loc);
    rf_http_json_error(req, 307, "redirect", "ask the leader");
    return 1;
  }
  {
    /* A HEAD goes to the leader as a GET: the relayed answer then has the
    ** real Content-Length (rf_http_respond drops the body of a HEAD), where
    ** a relayed HEAD answer would say Content-Length: 0 (RFC 9110 8.6). */
    const char *method = req->method;
    int rc;
    if (strcmp(method, "HEAD") == 0) req->method = "GET";
    rc = rf_fwd_send(a->fwd, lc->http_host, lc->http_port, req, on_forwarded,
                     req);
    req->method = method;
    if (rc < 0) retry_later(req, 503, "no_leader", "cannot reach the leader");
  }
  return 1;
}

/* ------------------------------------------------------------ writes */

static void propose(rf_api *a, rf_http_req *req, rf_buf *entry) {
  uint64_t index, term;
  int rc;
  if (entry->oom) {
    rf_buf_free(entry);
    rf_http_json_error(req, 500, "internal", "out of memory");
    return;
  }
  rc = raft_propose(rf_node_core(a->node), entry->p, entry->n, &index, &term);
  rf_buf_free(entry);
  if (rc == RAFT_ETOOBIG) {
    rf_http_json_error(req, 413, "body_too_large", "entry exceeds max_msg_bytes");
  } else if (rc == RAFT_ENOTLEADER) {
    retry_later(req, 503, "not_leader", "leadership moved; retry");
  } else if (rc < 0) {
    rf_http_json_error(req, 500, "internal", raft_strerror(rc));
  } else {
    rf_waits_write(a->waits, req, index, term);
    rf_node_kick(a->node);
  }
}

static int kv_key(rf_http_req *req, const char **key, size_t *klen) {
  *key = req->path + 4; /* after "/kv/" */
  *klen = req->path_len - 4;
  if (*klen == 0) {
    rf_http_json_error(req, 400, "bad_request", "empty key");
    return 0;
  }
  return 1;
}

static void put_kv(rf_api *a, rf_http_req *req) {
  rf_sm_arg args[2];
  rf_buf e;
  const char *key;
  size_t klen;
  if (route_to_leader(a, req) || !kv_key(req, &key, &klen)) return;
  args[0] = (rf_sm_arg){"key", key, klen};
  args[1] = (rf_sm_arg){"value", req->body, req->body_len};
  rf_buf_init(&e);
  rf_sm_encode_args(&e, "put", now_ms(), args, 2);
  propose(a, req, &e);
}

static void delete_kv(rf_api *a, rf_http_req *req) {
  rf_sm_arg arg;
  rf_buf e;
  const char *key;
  size_t klen;
  if (route_to_leader(a, req) || !kv_key(req, &key, &klen)) return;
  arg = (rf_sm_arg){"key", key, klen};
  rf_buf_init(&e);
  rf_sm_encode_args(&e, "delete", now_ms(), &arg, 1);
  propose(a, req, &e);
}

static int name_after(rf_http_req *req, size_t skip, char *name, size_t cap) {
  size_t n = req->path_len - skip;
  if (n == 0 || n >= cap || memchr(req->path + skip, '\0', n) ||
      memchr(req->path + skip, '/', n)) {
    rf_http_json_error(req, 404, "not_found", "no such command");
    return 0;
  }
  memcpy(name, req->path + skip, n);
  name[n] = '\0';
  return 1;
}

static void post_cmd(rf_api *a, rf_http_req *req) {
  char name[256];
  rf_buf e;
  int rc;
  if (route_to_leader(a, req) || !name_after(req, 5, name, sizeof(name)))
    return;
  if (!rf_sm_has_command(rf_node_sm(a->node), name)) {
    rf_http_json_error(req, 404, "unknown_command", name);
    return;
  }
  rf_buf_init(&e);
  rc = rf_sm_encode_json(&e, name, now_ms(), req->body, req->body_len);
  if (rc == RF_SM_EBADENTRY) {
    rf_buf msg;
    rf_buf_init(&msg);
    rf_buf_printf(&msg, "arguments are not valid JSON: %.*s", (int)e.n,
                  e.p ? e.p : "");
    rf_http_json_error(req, 400, "bad_request", msg.p ? msg.p : "bad JSON");
    rf_buf_free(&msg);
    rf_buf_free(&e);
    return;
  }
  propose(a, req, &e);
}

/* ------------------------------------------------------------ reads */

static void serve_get(rf_api *a, rf_http_req *req) {
  const void *val;
  size_t vlen;
  const char *key = req->path + 4;
  if (!rf_store_get(rf_sm_store(rf_node_sm(a->node)), key,
                    req->path_len - 4, &val, &vlen)) {
    rf_http_json_error(req, 404, "not_found", "no such key");
    return;
  }
  rf_http_respond(req, 200, "application/octet-stream", val, vlen);
}

static long range_limit(rf_http_req *req) {
  size_t n;
  const char *s = rf_http_query_get(req, "limit", &n);
  char *end;
  long v;
  if (s == NULL || n == 0) return RANGE_LIMIT_DEFAULT;
  v = strtol(s, &end, 10);
  if (end != s + n || v < 1 || v > RANGE_LIMIT_MAX) return -1;
  return v;
}

/* ?encoding=base64 makes range reads binary-safe: JSON strings cannot
** carry bytes that are not UTF-8 without ambiguity. */
static void json_bytes(rf_buf *b, const void *data, size_t len, int b64) {
  static const char tab[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const unsigned char *s = data;
  if (!b64) {
    rf_buf_json_str(b, data, len);
    return;
  }
  rf_buf_add(b, "\"", 1);
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned)s[i] << 16;
    char out[4];
    if (i + 1 < len) v |= (unsigned)s[i + 1] << 8;
    if (i + 2 < len) v |= s[i + 2];
    out[0] = tab[v >> 18 & 63];
    out[1] = tab[v >> 12 & 63];
    out[2] = i + 1 < len ? tab[v >> 6 & 63] : '=';
    out[3] = i + 2 < len ? tab[v & 63] : '=';
    rf_buf_add(b, out, 4);
  }
  rf_buf_add(b, "\"", 1);
}

static int want_base64(rf_http_req *req, int *b64) {
  size_t n;
  const char *e = rf_http_query_get(req, "encoding", &n);
  *b64 = e != NULL && n == 6 && memcmp(e, "base64", 6) == 0;
  if (e == NULL || *b64 || (n == 4 && memcmp(e, "utf8", 4) == 0)) return 1;
  rf_http_json_error(req, 400, "bad_request", "encoding must be utf8 or base64");
  return 0;
}

static void serve_range(rf_api *a, rf_http_req *req) {
  rf_store *st = rf_sm_store(rf_node_sm(a->node));
  rf_store_iter it;
  rf_store_kv kv;
  rf_buf b;
  size_t plen = 0;
  const char *prefix = rf_http_query_get(req, "prefix", &plen);
  long limit = range_limit(req), n = 0;
  int b64;
  if (!want_base64(req, &b64)) return;
  if (limit < 0) {
    rf_http_json_error(req, 400, "bad_request", "limit must be 1..10000");
    return;
  }
  rf_buf_init(&b);
  rf_buf_str(&b, "{\"items\":[");
  rf_store_seek(st, &it, prefix, plen);
  while (rf_store_next(&it, &kv)) {
    if (kv.klen < plen || memcmp(kv.key, prefix, plen) != 0) break;
    if (n == limit) { n++; break; }
    rf_buf_str(&b, n++ ? ",{\"key\":" : "{\"key\":");
    json_bytes(&b, kv.key, kv.klen, b64);
    rf_buf_str(&b, ",\"value\":");
    json_bytes(&b, kv.val, kv.vlen, b64);
    rf_buf_str(&b, "}");
  }
  rf_buf_printf(&b, "],\"more\":%s}", n > limit ? "true" : "false");
  respond_buf(req, 200, "application/json", &b);
}

/* Query arguments: ?args=<JSON>, or else every other parameter as a
** string field: ?account=bob -> {"account":"bob"}. */
static void query_args(const rf_http_req *req, rf_buf *out) {
  const char *k, *v;
  size_t klen, vlen, n = 0;
  const char *args = rf_http_query_get(req, "args", &vlen);
  if (args != NULL) {
    rf_buf_add(out, args, vlen);
    return;
  }
  rf_buf_str(out, "{");
  for (size_t i = 0; rf_http_query_at(req, i, &k, &klen, &v, &vlen); i++) {
    if ((klen == 5 && memcmp(k, "stale", 5) == 0) ||
        (klen == 8 && memcmp(k, "redirect", 8) == 0))
      continue;
    if (n++) rf_buf_str(out, ",");
    rf_buf_json_str(out, k, klen);
    rf_buf_str(out, ":");
    rf_buf_json_str(out, v, vlen);
  }
  rf_buf_str(out, "}");
}

static void serve_query(rf_api *a, rf_http_req *req) {
  char name[256];
  rf_buf args, b;
  int rc;
  if (!name_after(req, 7, name, sizeof(name))) return;
  rf_buf_init(&args);
  rf_buf_init(&b);
  query_args(req, &args);
  rc = rf_sm_query(rf_node_sm(a->node), name, args.p, args.n, &b);
  rf_buf_free(&args);
  if (rc == RF_SM_OK) {
    respond_buf(req, 200, "application/json", &b);
    return;
  }
  rf_http_json_error(req, rc == RF_SM_ENOTFOUND ? 404
                          : rc == RF_SM_EBADENTRY ? 400
                          : rc == RF_SM_EFAILED ? 422 : 500,
                     rc == RF_SM_EFAILED ? "query_failed" : rf_sm_strerror(rc),
                     b.p ? b.p : "");
  rf_buf_free(&b);
}

/* Serve now (?stale), or after a ReadIndex round confirmed this leader and
** the state machine caught up with the commit index it returned. */
static void read(rf_api *a, rf_http_req *req, rf_waits_serve serve) {
  int rc;
  if (has_flag(req, "stale")) {
    serve(a, req);
    return;
  }
  if (route_to_leader(a, req)) return;
  rc = rf_waits_read(a->waits, req, serve);
  if (rc == RAFT_ENOTLEADER)
    retry_later(req, 503, "not_leader", "leadership moved; retry");
  else if (rc < 0)
    rf_http_json_error(req, 500, "internal", raft_strerror(rc));
  else
    rf_node_kick(a->node);
}

static void get_kv(rf_api *a, rf_http_req *req) {
  if (req->path_len == 4) {
    rf_http_json_error(req, 400, "bad_request", "empty key");
    return;
  }
  read(a, req, serve_get);
}

static void get_range(rf_api *a, rf_http_req *req) { read(a, req, serve_range); }
static void get_query(rf_api *a, rf_http_req *req) { read(a, req, serve_query); }

static void get_health(rf_api *a, rf_http_req *req) {
  (void)a;
  rf_http_respond(req, 200, "application/json", "{\"ok\":true}", 11);
}

static void get_status(rf_api *a, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  rf_node_status_json(a->node, &b);
  respond_buf(req, 200, "application/json", &b);
}

/* ------------------------------------------------------------ routing */

static const route routes[] = {
  {"/health", "GET", get_health, NULL, NULL, NULL},
  {"/status", "GET", get_status, NULL, NULL, NULL},
  {"/kv", "GET", get_range, NULL, NULL, NULL},
  {"/kv/", "GET, PUT, DELETE", get_kv, put_kv, NULL, delete_kv},
  {"/cmd/", "POST", NULL, NULL, post_cmd, NULL},
  {"/query/", "GET", get_query, NULL, NULL, NULL},
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
  if (a->closing) {
    retry_later(req, 503, "shutting_down", "the node is stopping");
    return;
  }
  if (rf_node_failed(a->node) && fn != get_status && fn != get_health) {
    rf_http_json_error(req, 503, "storage_failed",
                       "this node's storage failed; use another node");
    return;
  }
  fn(a, req);
}

/* ------------------------------------------------------------ node events */

void rf_api_applied(rf_api *a, const raft_entry *e, int rc, const char *res,
                    size_t len) {
  rf_waits_applied(a->waits, e, rc, res, len);
}

void rf_api_read_ready(rf_api *a, const raft_read_state *rs) {
  rf_waits_read_ready(a->waits, rs);
}

void rf_api_snapshot_installed(rf_api *a, uint64_t index) {
  rf_waits_jumped(a->waits, index);
}

void rf_api_leader_changed(rf_api *a) {
  if (!is_leader(a)) rf_waits_lost_leadership(a->waits);
}

/* ------------------------------------------------------------ lifecycle */

static int start_http(rf_api *a, uv_loop_t *loop) {
  const rf_config *cfg = rf_node_config(a->node);
  const rf_node_conf *self = rf_config_node(cfg, rf_node_id(a->node));
  rf_http_opts o;
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
  return rf_http_start(loop, &o, &a->http);
}

int rf_api_start(rf_node *node, uv_loop_t *loop, rf_api **out) {
  const rf_config *cfg = rf_node_config(node);
  rf_fwd_opts fo;
  char via[32];
  rf_api *a = calloc(1, sizeof(*a));
  int rc;
  *out = NULL;
  if (a == NULL) return UV_ENOMEM;
  a->node = node;
  rf_fwd_opts_init(&fo);
  snprintf(via, sizeof(via), "node-%llu", (unsigned long long)rf_node_id(node));
  fo.via = via;
  fo.timeout_ms = cfg->forward_timeout_ms;
  /* drop pooled connections before the leader's idle timeout can close one
  ** under a write, which would turn it into an avoidable 504 */
  fo.idle_timeout_ms = cfg->idle_timeout_ms / 2 > 0 ? cfg->idle_timeout_ms / 2 : 1;
  if ((rc = rf_waits_init(loop, node, a, cfg->commit_timeout_ms, &a->waits)) < 0)
    goto fail;
  if ((rc = rf_fwd_init(loop, &a->fwd, &fo)) < 0) goto fail;
  if ((rc = start_http(a, loop)) < 0) goto fail;
  *out = a;
  return 0;
fail:
  if (a->fwd) rf_fwd_close(a->fwd, NULL, NULL);
  if (a->waits) rf_waits_close(a->waits, NULL, NULL);
  free(a);
  return rc;
}

static void stopped_part(void *ud) {
  rf_api *a = ud;
  if (--a->closing > 1) return; /* closing stays > 0 for on_request */
  if (a->stop_done) a->stop_done(a->stop_ud);
  free(a);
}

/* Pending requests are answered 503 first; then forwarder, waits and the
** server close, each calling stopped_part once. */
void rf_api_stop(rf_api *a, void (*done)(void *ud), void *ud) {
  a->stop_done = done;
  a->stop_ud = ud;
  a->closing = 4;
  rf_waits_close(a->waits, stopped_part, a);
  rf_fwd_close(a->fwd, stopped_part, a);
  rf_http_close(a->http, stopped_part, a);
}
