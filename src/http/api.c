/*
** api.c -- the node's REST API (see api.h).
**
** Routing and answers.  Whether a request runs here or goes to the leader
** is decided first (route_to_leader); writes are proposed to the driver,
** which answers once their entry applied; linearizable reads are served
** when the driver says the state machine may be read.  Every RF_E* code
** becomes an HTTP status in one place: answer_error().
*/
#include <stdlib.h>
#include <string.h>

#include "http/api.h"
#include "http/auth.h"
#include "http/cluster.h"
#include "http/kvjson.h"
#include "http/backup.h"
#include "http/scripts.h"
#include "http/watch.h"
#include "rafting/buf.h"
#include "rafting/util.h"
#include "rafting/forward.h"
#include "rafting/http.h"
#include "rafting/log.h"
#include "rafting/metrics.h"
#include "http/metrics_page.h"
#include "rafting/sm.h"

#define RANGE_LIMIT_DEFAULT 100
#define RANGE_LIMIT_MAX 10000

struct rf_api {
  rf_api_deps deps;     /* borrowed from the node */
  rf_http_server *http;
  rf_fwd *fwd;
  rf_watch *watch;
  rf_cluster *cluster;
  rf_backup *backup;    /* GET /snapshot */
  int closing;
  int draining;         /* stopping: new requests go elsewhere */
  void (*stop_done)(void *);
  void *stop_ud;
  uint64_t replay_to;   /* the commit restored at start: /health waits */
  int ready;            /* applied reached replay_to once */
};

typedef void (*route_fn)(rf_api *a, rf_http_req *req);

typedef struct route {
  const char *prefix;  /* the path, or a prefix when it ends in '/' */
  const char *allow;   /* methods, for 405's Allow header */
  route_fn get, put, post, del;
} route;

/* ------------------------------------------------------------ answers */

/* JSON answers end with a newline (friendlier in a terminal); raw values
** (GET /kv/K) are the user's bytes and get none. */
static void respond_buf(rf_http_req *req, int status, const char *type,
                        rf_buf *b) {
  if (strcmp(type, "application/json") == 0) rf_buf_add(b, "\n", 1);
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

/* The one map from RF_E* codes to HTTP answers.  msg, when given, is the
** handler's message (a failed command). */
static void answer_error(rf_http_req *req, int rc, int write, const char *msg,
                         size_t len) {
  switch (rc) {
  case RF_ENOTLEADER:
    retry_later(req, 503, "not_leader", "leadership moved; retry");
    return;
  case RF_EBUSY: /* the core takes no proposal during a leadership transfer */
    retry_later(req, 503, "transfer_in_progress", "leadership is being "
                "transferred; retry");
    return;
  case RF_ETOOBIG:
    rf_http_json_error(req, 413, "body_too_large", "entry exceeds max_msg_bytes");
    return;
  case RF_ENOTCOMMITTED:
    retry_later(req, 503, "not_committed", "leadership changed before the "
                "write committed; it was not applied; retry");
    return;
  case RF_ESTOPPING:
    if (write) /* proposed already: the others may still commit it */
      rf_http_json_error(req, 504, "outcome_unknown", "the node stopped "
                         "before the write's outcome was known; it may "
                         "still commit");
    else
      retry_later(req, 503, "shutting_down", "the node is stopping");
    return;
  case RF_ESTORAGE:
    if (write)
      rf_http_json_error(req, 504, "outcome_unknown", "this node's storage "
                         "failed while the write waited; it may still commit");
    else
      rf_http_json_error(req, 503, "storage_failed",
                         "this node's storage failed; use another node");
    return;
  case RF_ETIMEDOUT:
    if (write)
      rf_http_json_error(req, 504, "outcome_unknown", "the write did not "
                         "commit in time; it may still commit");
    else
      retry_later(req, 503, "no_quorum",
                  "the leader could not confirm the read with a quorum");
    return;
  case RF_ESNAPSHOT:
    rf_http_json_error(req, 504, "outcome_unknown", "this node caught up from "
                       "a snapshot that covers the write; it may have "
                       "committed");
    return;
  default:
    break;
  }
  {
    int status = rc == RF_ENOTFOUND ? 404 : rc == RF_EFAILED ? 422
               : rc == RF_EBADENTRY ? 400 : 500;
    const char *code = rc == RF_ENOTFOUND ? (write ? "unknown_command"
                                                   : "unknown_query")
                     : rc == RF_EFAILED ? (write ? "command_failed"
                                                 : "query_failed")
                     : rc == RF_EBADENTRY ? "bad_request" : "internal";
    rf_buf m;
    rf_buf_init(&m);
    if (msg != NULL && len > 0) rf_buf_add(&m, msg, len);
    else rf_buf_str(&m, rf_strerror(rc));
    rf_http_json_error(req, status, code, m.p ? m.p : "out of memory");
    rf_buf_free(&m);
  }
}

static int has_flag(const rf_http_req *req, const char *name) {
  size_t n;
  return rf_http_query_get(req, name, &n) != NULL;
}

/* The leader's timestamp for a command's context: wall-clock time. */
static uint64_t now_ms(void) { return (uint64_t)rf_wall_ms(); }

/* ------------------------------------------------------------ leader */

static int is_leader(rf_api *a) {
  return rf_driver_role(a->deps.drv) == RAFT_LEADER &&
         !rf_driver_failed(a->deps.drv);
}

static void on_forwarded(void *ud, int status, const rf_fwd_resp *resp) {
  rf_http_req *req = ud;
  int write = strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0;
  int http = rf_fwd_http_status(status);
  if (status == 0) {
    rf_fwd_relay(req, resp);
  } else if (write && (http == 504 || http == 502 ||
                       status == RF_FWD_ECANCELED)) {
    /* the leader may have the request: only a refused connect is safe */
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
  uint64_t leader = rf_driver_leader(a->deps.drv);
  const rf_node_conf *lc;
  size_t n;
  if (is_leader(a)) return 0;
  lc = leader ? rf_config_node(a->deps.cfg, leader) : NULL;
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
    char hp[300];
    rf_addr_format(hp, sizeof(hp), lc->http_host, lc->http_port);
    rf_buf_printf(&loc, "http://%s", hp);
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
    if (a->deps.tls_client != NULL) { /* a leader added since the start */
      char name[32];
      snprintf(name, sizeof(name), "node%llu", (unsigned long long)leader);
      (void)rf_fwd_expect(a->fwd, lc->http_host, lc->http_port, name);
    }
    rc = rf_fwd_send(a->fwd, lc->http_host, lc->http_port, req, on_forwarded,
                     req);
    req->method = method;
    if (rc < 0) retry_later(req, 503, "no_leader", "cannot reach the leader");
  }
  return 1;
}

/* ------------------------------------------------------------ writes */

/* The driver's answer to a write: the entry's result once it applied. */
static void on_written(void *ud, int status, uint64_t index, uint64_t term,
                       const char *res, size_t len) {
  rf_http_req *req = ud;
  rf_buf b;
  if (status < 0 && status != RF_EFAILED && status != RF_ENOTFOUND &&
      status != RF_EBADENTRY) RF_METRIC_INC(proposals_failed);
  if (status == RF_EFAILED || status == RF_ENOTFOUND ||
      status == RF_EBADENTRY) { /* the entry is in the log and failed */
    rf_buf_init(&b);
    rf_buf_printf(&b, "{\"error\":\"%s\",\"message\":",
                  status == RF_EFAILED ? "command_failed"
                  : status == RF_ENOTFOUND ? "unknown_command" : "bad_request");
    rf_buf_json_str(&b, res, len);
    rf_buf_printf(&b, ",\"index\":%llu,\"term\":%llu}",
                  (unsigned long long)index, (unsigned long long)term);
    respond_buf(req, status == RF_EFAILED ? 422
                     : status == RF_ENOTFOUND ? 404 : 400,
                "application/json", &b);
    return;
  }
  if (status < 0) {
    answer_error(req, status, 1, NULL, 0);
    return;
  }
  rf_buf_init(&b);
  rf_buf_printf(&b, "{\"index\":%llu,\"term\":%llu,\"result\":",
                (unsigned long long)index, (unsigned long long)term);
  if (len) rf_buf_add(&b, res, len);
  else rf_buf_str(&b, "null");
  rf_buf_str(&b, "}");
  respond_buf(req, 200, "application/json", &b);
}

static void propose(rf_api *a, rf_http_req *req, rf_buf *entry) {
  int rc;
  if (entry->oom) {
    rf_buf_free(entry);
    rf_http_json_error(req, 500, "internal", "out of memory");
    return;
  }
  rc = rf_driver_propose(a->deps.drv, entry->p, entry->n, on_written, req,
                         NULL, NULL);
  rf_buf_free(entry);
  RF_METRIC_INC(proposals);
  if (rc < 0) RF_METRIC_INC(proposals_failed);
  if (rc < 0) answer_error(req, rc, 0, NULL, 0); /* refused: nothing done */
}

static int kv_key(rf_http_req *req, const char **key, size_t *klen) {
  *key = req->path + 4; /* after "/kv/" */
  *klen = req->path_len - 4;
  if (*klen == 0) {
    rf_http_json_error(req, 400, "bad_request", "empty key");
    return 0;
  }
  if (rf_sm_reserved(*key, *klen)) {
    rf_http_json_error(req, 400, "reserved_key", "keys beginning with "
                       "\\0rafting/ hold the cluster's scripts (use /scripts)");
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

/* Refusing an unknown command before it costs a log entry needs the
** scripts in force: until the config's bootstrap script applied, the
** apply decides (it runs after that script, in log order). */
static int command_known(rf_api *a, const char *name) {
  return rf_sm_has_command(a->deps.sm, name) ||
         (a->deps.cfg->commands != NULL && !rf_sm_scripts_seeded(a->deps.sm));
}

static void post_cmd(rf_api *a, rf_http_req *req) {
  char name[256];
  rf_buf e;
  int rc;
  if (route_to_leader(a, req) || !name_after(req, 5, name, sizeof(name)))
    return;
  if (strncmp(name, "script.", 7) == 0 || !command_known(a, name)) {
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
  if (rf_sm_reserved(key, req->path_len - 4) ||
      !rf_store_get(rf_sm_store(a->deps.sm), key,
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

/* Where a page starts: the first key under the prefix, or the first one
** after ?start_after (given in the answer's encoding). */
static int range_seek(rf_http_req *req, rf_store *st, rf_store_iter *it,
                      const char *prefix, size_t plen, int b64) {
  size_t n;
  const char *sa = rf_http_query_get(req, "start_after", &n);
  rf_buf k;
  rf_store_kv kv;
  if (sa == NULL) {
    rf_store_seek(st, it, prefix, plen);
    return 1;
  }
  rf_buf_init(&k);
  if (b64 ? rf_kvjson_unb64(&k, sa, n) < 0 : (rf_buf_add(&k, sa, n), k.oom)) {
    rf_buf_free(&k);
    rf_http_json_error(req, 400, "bad_request",
                       "start_after is not valid base64");
    return 0;
  }
  if (rf_store_keycmp(k.p, k.n, prefix, plen) < 0) {
    rf_store_seek(st, it, prefix, plen);
  } else {
    rf_store_seek(st, it, k.p ? k.p : "", k.n);
    if (rf_store_next(it, &kv) && rf_store_keycmp(kv.key, kv.klen, k.p, k.n))
      rf_store_seek(st, it, k.p ? k.p : "", k.n); /* not the key itself */
  }
  rf_buf_free(&k);
  return 1;
}

static void serve_range(rf_api *a, rf_http_req *req) {
  rf_store *st = rf_sm_store(a->deps.sm);
  rf_store_iter it;
  rf_store_kv kv, last = {0};
  rf_buf b;
  size_t plen = 0;
  const char *prefix = rf_http_query_get(req, "prefix", &plen);
  long limit = range_limit(req), n = 0;
  int b64;
  if (!rf_kvjson_encoding(req, &b64)) return;
  if (limit < 0) {
    rf_http_json_error(req, 400, "bad_request", "limit must be 1..10000");
    return;
  }
  if (prefix == NULL) prefix = "";
  if (!range_seek(req, st, &it, prefix, plen, b64)) return;
  rf_buf_init(&b);
  rf_buf_str(&b, "{\"items\":[");
  while (rf_store_next(&it, &kv)) {
    if (kv.klen < plen || memcmp(kv.key, prefix, plen) != 0) break;
    if (rf_sm_reserved(kv.key, kv.klen)) continue; /* the scripts */
    if (n == limit) { n++; break; }
    rf_buf_str(&b, n++ ? ",{\"key\":" : "{\"key\":");
    rf_kvjson_bytes(&b, kv.key, kv.klen, b64);
    rf_buf_str(&b, ",\"value\":");
    rf_kvjson_bytes(&b, kv.val, kv.vlen, b64);
    rf_buf_str(&b, "}");
    last = kv;
  }
  rf_buf_printf(&b, "],\"more\":%s", n > limit ? "true" : "false");
  if (n > limit) { /* the cursor for ?start_after: the last key returned */
    rf_buf_str(&b, ",\"next\":");
    rf_kvjson_bytes(&b, last.key, last.klen, b64);
  }
  rf_buf_str(&b, "}");
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
  rc = rf_sm_query(a->deps.sm, name, args.p, args.n, &b);
  rf_buf_free(&args);
  if (rc == RF_SM_OK) {
    respond_buf(req, 200, "application/json", &b);
    return;
  }
  answer_error(req, rc, 0, b.p, b.n);
  rf_buf_free(&b);
}

static void serve_scripts(rf_api *a, rf_http_req *req) {
  rf_scripts_list(a->deps.sm, req);
}

static void serve_script(rf_api *a, rf_http_req *req) {
  rf_scripts_source(a->deps.sm, req);
}

typedef void (*serve_fn)(rf_api *a, rf_http_req *req);

/* Which read a request is, from its path (the routes below). */
static serve_fn serve_of(const rf_http_req *req) {
  if (req->path_len >= 7 && memcmp(req->path, "/query/", 7) == 0)
    return serve_query;
  if (req->path_len >= 4 && memcmp(req->path, "/kv/", 4) == 0)
    return serve_get;
  if (req->path_len >= 9 && memcmp(req->path, "/scripts/", 9) == 0)
    return serve_script; /* an empty name: 400 there */
  if (req->path_len == 8 && memcmp(req->path, "/scripts", 8) == 0)
    return serve_scripts;
  return serve_range;
}

typedef struct read_op {
  rf_api *a;
  rf_http_req *req;
  uint64_t t0;          /* for rafting_raft_read_index_seconds */
} read_op;

static void on_readable(void *ud, int status) {
  read_op *op = ud;
  rf_api *a = op->a;
  rf_http_req *req = op->req;
  if (status >= 0) rf_histo_since(&rf_metrics_g.read_index, op->t0);
  free(op);
  if (status < 0) answer_error(req, status, 0, NULL, 0);
  else serve_of(req)(a, req);
}

/* Serve now (?stale), or once the driver says a ReadIndex round confirmed
** this leader and the state machine caught up with it. */
static void read(rf_api *a, rf_http_req *req) {
  read_op *op;
  int rc;
  if (has_flag(req, "stale")) {
    serve_of(req)(a, req);
    return;
  }
  if (route_to_leader(a, req)) return;
  if ((op = malloc(sizeof(*op))) == NULL) {
    answer_error(req, RF_ENOMEM, 0, NULL, 0);
    return;
  }
  op->a = a;
  op->req = req;
  op->t0 = rf_metrics_now();
  if ((rc = rf_driver_read(a->deps.drv, on_readable, op)) < 0) {
    free(op);
    answer_error(req, rc, 0, NULL, 0);
  }
}

static void get_kv(rf_api *a, rf_http_req *req) {
  if (req->path_len == 4) {
    rf_http_json_error(req, 400, "bad_request", "empty key");
    return;
  }
  read(a, req);
}

static void get_range(rf_api *a, rf_http_req *req) { read(a, req); }
static void get_query(rf_api *a, rf_http_req *req) { read(a, req); }

static void get_scripts(rf_api *a, rf_http_req *req) { read(a, req); }

static void put_script(rf_api *a, rf_http_req *req) {
  rf_buf e;
  rf_buf_init(&e);
  if (route_to_leader(a, req)) return;
  if (rf_scripts_put_entry(a->deps.sm, req, now_ms(), &e)) propose(a, req, &e);
  else rf_buf_free(&e);
}

static void delete_script(rf_api *a, rf_http_req *req) {
  rf_buf e;
  rf_buf_init(&e);
  if (route_to_leader(a, req)) return;
  if (rf_scripts_delete_entry(a->deps.sm, req, now_ms(), &e))
    propose(a, req, &e);
  else rf_buf_free(&e);
}

static void get_watch(rf_api *a, rf_http_req *req) {
  rf_watch_get(a->watch, req);
}

/* The config's commands script (installed through the log by the first
** leader) is in force, or was at some point (then deleted on purpose). */
static int bootstrapped(rf_api *a) {
  return a->deps.cfg->commands == NULL || rf_sm_scripts_seeded(a->deps.sm);
}

/* "starting" (503) until the entries committed locally before the start
** are applied and the bootstrap script is installed, so orchestration does
** not route to a node still replaying or without its commands. */
static void get_health(rf_api *a, rf_http_req *req) {
  uint64_t applied = rf_driver_applied(a->deps.drv);
  char body[128];
  int n;
  if (!a->ready && (applied < a->replay_to || !bootstrapped(a))) {
    n = snprintf(body, sizeof body, "{\"ok\":false,\"status\":\"starting\","
                 "\"applied\":%llu,\"target\":%llu}\n",
                 (unsigned long long)applied, (unsigned long long)a->replay_to);
    rf_http_respond(req, 503, "application/json", body, (size_t)n);
    return;
  }
  a->ready = 1;
  rf_http_respond(req, 200, "application/json", "{\"ok\":true}\n", 12);
}

static void get_status(rf_api *a, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  a->deps.status_json(a->deps.ud, &b);
  respond_buf(req, 200, "application/json", &b);
}

static void get_metrics(rf_api *a, rf_http_req *req) {
  rf_buf b;
  rf_buf_init(&b);
  rf_metrics_page(a->deps.drv, a->http, &b);
  rf_watch_metrics(a->watch, &b);
  respond_buf(req, 200, RF_METRICS_CONTENT_TYPE, &b);
}

static void get_cluster(rf_api *a, rf_http_req *req) {
  rf_cluster_get(a->cluster, req);
}

static void post_leader(rf_api *a, rf_http_req *req) {
  if (!route_to_leader(a, req)) rf_cluster_transfer(a->cluster, req);
}

static void get_snapshot(rf_api *a, rf_http_req *req) {
  rf_backup_get(a->backup, req); /* this node's own: no forwarding */
}

static void post_members(rf_api *a, rf_http_req *req) {
  if (!route_to_leader(a, req)) rf_cluster_add(a->cluster, req);
}

static void post_member(rf_api *a, rf_http_req *req) {
  if (!route_to_leader(a, req)) rf_cluster_member(a->cluster, req, 0);
}

static void delete_member(rf_api *a, rf_http_req *req) {
  if (!route_to_leader(a, req)) rf_cluster_member(a->cluster, req, 1);
}

/* ------------------------------------------------------------ routing */

static const route routes[] = {
  {"/health", "GET", get_health, NULL, NULL, NULL},
  {"/status", "GET", get_status, NULL, NULL, NULL},
  {"/metrics", "GET", get_metrics, NULL, NULL, NULL},
  {"/kv", "GET", get_range, NULL, NULL, NULL},
  {"/kv/", "GET, PUT, DELETE", get_kv, put_kv, NULL, delete_kv},
  {"/cmd/", "POST", NULL, NULL, post_cmd, NULL},
  {"/query/", "GET", get_query, NULL, NULL, NULL},
  {"/watch", "GET", get_watch, NULL, NULL, NULL},
  {"/scripts", "GET", get_scripts, NULL, NULL, NULL},
  {"/scripts/", "GET, PUT, DELETE", get_scripts, put_script, NULL,
   delete_script},
  {"/cluster", "GET", get_cluster, NULL, NULL, NULL},
  {"/cluster/leader", "POST", NULL, NULL, post_leader, NULL},
  {"/snapshot", "GET", get_snapshot, NULL, NULL, NULL},
  {"/cluster/members", "POST", NULL, NULL, post_members, NULL},
  {"/cluster/members/", "POST, DELETE", NULL, NULL, post_member, delete_member},
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

/* The query parameters each route knows (NULL: any, /query/ takes its
** arguments that way); a route not listed takes none. */
static const char *route_params(const route *r) {
  static const struct { const char *prefix, *params; } known[] = {
    {"/kv", " prefix limit start_after encoding stale redirect "},
    {"/kv/", " stale redirect "},
    {"/cmd/", " redirect "},
    {"/cluster/leader", " redirect "},
    {"/cluster/members", " redirect "},
    {"/cluster/members/", " redirect "},
    {"/query/", NULL},
    {"/scripts", " stale redirect "},
    {"/scripts/", " stale redirect "},
    {"/watch", " prefix since timeout_ms stream encoding "},
    {"/snapshot", " fresh timeout_ms "},
  };
  for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
    if (strcmp(known[i].prefix, r->prefix) == 0) return known[i].params;
  return " ";
}

static int is_read(const rf_http_req *req) {
  return strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
}

/* 1 if every query parameter is known to the route (and ?stale comes
** with a read), else 0 after a 400 naming the first that is not. */
static int params_ok(const route *r, rf_http_req *req) {
  const char *list = route_params(r), *k, *v;
  size_t klen, vlen;
  for (size_t i = 0; list && rf_http_query_at(req, i, &k, &klen, &v, &vlen);
       i++) {
    const char *p = list;
    int found = 0;
    while (!found && (p = strchr(p + 1, ' ')) != NULL)
      found = klen > 0 && (size_t)(p - list) > klen && p[-(long)klen - 1] == ' '
              && memcmp(p - klen, k, klen) == 0;
    if (found && klen == 5 && memcmp(k, "stale", 5) == 0 && !is_read(req)) {
      rf_http_json_error(req, 400, "bad_request", "stale is for reads: a "
                         "write always goes through the leader");
      return 0;
    }
    if (!found) {
      rf_buf m;
      rf_buf_init(&m);
      rf_buf_str(&m, "unknown query parameter ");
      rf_buf_json_str(&m, k, klen);
      rf_buf_printf(&m, "; %s takes:%s", r->prefix, strlen(list) > 1 ? list
                    : " none");
      rf_http_json_error(req, 400, "bad_request", m.p ? m.p : "bad parameter");
      rf_buf_free(&m);
      return 0;
    }
  }
  return 1;
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
  if (!rf_auth_allow(a->deps.cfg, req)) return;
  if (!params_ok(r, req)) return;
  if (a->closing || (a->draining && fn != get_status && fn != get_metrics)) {
    if (a->draining) rf_http_close_after(req); /* reconnect elsewhere */
    retry_later(req, 503, "shutting_down", "the node is stopping");
    return;
  }
  if (rf_driver_failed(a->deps.drv) && fn != get_status && fn != get_health &&
      fn != get_metrics) {
    rf_http_json_error(req, 503, "storage_failed",
                       "this node's storage failed; use another node");
    return;
  }
  fn(a, req);
}

/* A client left: a parked watch is answered (dropped) at once; anything
** else is answered when its callback comes. */
static void on_abort(void *ud, rf_http_req *req) {
  rf_api *a = ud;
  if (a->backup && rf_backup_abort(a->backup, req)) return;
  if (a->watch) rf_watch_abort(a->watch, req);
}

/* ------------------------------------------------------------ lifecycle */

static int start_http(rf_api *a, uv_loop_t *loop) {
  const rf_config *cfg = a->deps.cfg;
  const rf_node_conf *self = rf_config_node(cfg, a->deps.id);
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
  o.on_abort = on_abort;
  o.ud = a;
  o.tls = a->deps.tls_http;
  return rf_http_start(loop, &o, &a->http);
}

static uint64_t restored_commit(const rf_driver *drv) {
  raft_status st;
  rf_driver_status(drv, &st);
  return st.commit;
}

int rf_api_start(const rf_api_deps *deps, uv_loop_t *loop, rf_api **out) {
  const rf_config *cfg = deps->cfg;
  rf_fwd_opts fo;
  char via[32];
  rf_api *a = calloc(1, sizeof(*a));
  int rc;
  *out = NULL;
  if (a == NULL) return UV_ENOMEM;
  a->deps = *deps;
  a->replay_to = restored_commit(deps->drv);
  rf_fwd_opts_init(&fo);
  snprintf(via, sizeof(via), "node-%llu", (unsigned long long)deps->id);
  fo.via = via;
  fo.timeout_ms = cfg->forward_timeout_ms;
  /* drop pooled connections before the leader's idle timeout can close one
  ** under a write, which would turn it into an avoidable 504 */
  fo.idle_timeout_ms = cfg->idle_timeout_ms / 2 > 0 ? cfg->idle_timeout_ms / 2 : 1;
  fo.tls = deps->tls_client;
  if ((rc = rf_fwd_init(loop, &a->fwd, &fo)) < 0) goto fail;
  for (size_t i = 0; fo.tls && i < cfg->n_nodes && rc == 0; i++) {
    char name[32]; /* the leader must prove it is the node we meant */
    snprintf(name, sizeof(name), "node%llu",
             (unsigned long long)cfg->nodes[i].id);
    rc = rf_fwd_expect(a->fwd, cfg->nodes[i].http_host,
                       cfg->nodes[i].http_port, name);
  }
  if (rc < 0) goto fail;
  if ((rc = rf_watch_new(loop, deps->sm, deps->drv, cfg->watch_history_entries,
                         cfg->watch_history_bytes, &a->watch)) < 0)
    goto fail;
  if ((rc = rf_cluster_new(loop, deps->drv, cfg, deps->id, deps->members,
                           &a->cluster)) < 0)
    goto fail;
  if ((rc = rf_backup_new(loop, deps->snaps, deps->id, &a->backup)) < 0)
    goto fail;
  if ((rc = start_http(a, loop)) < 0) goto fail;
  *out = a;
  return 0;
fail:
  if (a->fwd) rf_fwd_close(a->fwd, NULL, NULL);
  if (a->watch) rf_watch_close(a->watch, NULL, NULL);
  if (a->cluster) rf_cluster_close(a->cluster, NULL, NULL);
  if (a->backup) rf_backup_close(a->backup, NULL, NULL);
  free(a);
  return rc;
}

static void stopped_part(void *ud) {
  rf_api *a = ud;
  if (--a->closing > 1) return; /* closing stays > 0 for on_request */
  if (a->stop_done) a->stop_done(a->stop_ud);
  free(a);
}

void rf_api_drain(rf_api *a) { a->draining = 1; }

void rf_api_leader_changed(rf_api *a) { rf_cluster_leader_changed(a->cluster); }

int rf_api_forwarding(const rf_api *a) { return rf_fwd_pending(a->fwd); }

/* Requests waiting on the driver were answered when it closed; the
** forwarder and the server close, each calling stopped_part once. */
void rf_api_stop(rf_api *a, void (*done)(void *ud), void *ud) {
  a->stop_done = done;
  a->stop_ud = ud;
  a->closing = 6;
  rf_backup_close(a->backup, stopped_part, a); /* ends the downloads */
  a->backup = NULL;
  rf_watch_close(a->watch, stopped_part, a); /* answers its parked requests */
  a->watch = NULL;
  rf_cluster_close(a->cluster, stopped_part, a); /* answers a transfer */
  a->cluster = NULL;
  rf_fwd_close(a->fwd, stopped_part, a);
  rf_http_close(a->http, stopped_part, a);
}
