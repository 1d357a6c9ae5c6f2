/*
** ctl.c -- `rafting ctl`: the command-line client of the REST API.
**
** Builds one request from the command, then sends it (send_loop): tries
** the endpoints in turn while they cannot be reached, follows 307/308,
** retries 503 with backoff, all within --timeout.  The answer's status
** becomes the exit status (see usage()).  Memory: everything is freed
** before rf_ctl_main returns.
*/
#include "ctl/ctl.h"
#include "ctl/http_client.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rafting/util.h"

#define DEFAULT_ENDPOINTS \
  "http://127.0.0.1:8001,http://127.0.0.1:8002,http://127.0.0.1:8003"
#define MAX_ENDPOINTS 64
#define MAX_REDIRECTS 5
#define MAX_STDIN_BYTES (64u << 20)
#define LS_PAGE 1000 /* keys per GET /kv page of ls */

typedef struct ctl {
  rf_hc_url ep[MAX_ENDPOINTS];
  size_t n_ep;
  const char *token, *cacert;
  double timeout_s;
  long limit;               /* ls: items in all, 0 = every key */
  const char *prefix;       /* ls: the prefix paged through */
  int stale, redirect, raw; /* raw: print the body as is (get) */
  int idempotent;           /* safe to send again after a lost answer */
  const char *method;
  rf_buf target, body;
} ctl;

static void usage(FILE *f) {
  fprintf(f,
    "usage: rafting ctl [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  put KEY [VALUE|-]      write KEY (VALUE absent or '-': read stdin)\n"
    "  get KEY                print KEY's value, raw bytes\n"
    "  del KEY                delete KEY\n"
    "  ls [PREFIX]            list keys and values under PREFIX\n"
    "  cmd NAME [JSON|-]      run command NAME with JSON arguments\n"
    "  query NAME [K=V...]    run read-only query NAME\n"
    "  status                 the node's /status\n"
    "  members                the cluster's members (GET /cluster)\n"
    "  members add ID PEER HTTP  add node ID (HOST:PORT each) as a learner\n"
    "  members promote ID     make learner ID a voter\n"
    "  members remove ID      remove node ID from the cluster\n"
    "  watch PREFIX           changes under PREFIX (GET /watch), as they come\n"
    "  leader transfer ID     move leadership to node ID\n"
    "  script list            the deployed command scripts (GET /scripts)\n"
    "  script get NAME        print script NAME's source\n"
    "  script put NAME FILE   deploy FILE ('-': stdin) as script NAME\n"
    "  script delete NAME     remove script NAME\n"
    "\n"
    "Options:\n"
    "  --endpoints URL,...    nodes to try in turn (env RAFTING_ENDPOINTS;\n"
    "                         default http://127.0.0.1:8001,...:8002,...:8003)\n"
    "  --token T              bearer token (env RAFTING_TOKEN)\n"
    "  --cacert FILE          use TLS, verifying the server against FILE;\n"
    "                         https:// endpoints use the system CAs without it\n"
    "  --timeout SECONDS      give up after this long (default 10)\n"
    "  --stale                get/ls/query/script list|get: read the node's\n"
    "                         own state\n"
    "  --redirect             ask followers for a 307 instead of a forward\n"
    "  --limit N              ls: at most N items (default: every key)\n"
    "\n"
    "Exit status: 0 ok, 1 not found (404), 2 usage error, 3 unavailable\n"
    "(no node reachable, 503 until the timeout, 5xx, outcome unknown),\n"
    "4 refused (401, 403, any other 4xx).\n");
}

static int fail_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "rafting ctl: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'rafting ctl --help'.\n");
  return RF_CTL_USAGE;
}

/* ---- building the request ---------------------------------------------- */

static void enc(rf_buf *b, const char *s, size_t n) {
  static const char hex[] = "0123456789ABCDEF";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
        c == '~') {
      rf_buf_add(b, &s[i], 1);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      rf_buf_add(b, e, 3);
    }
  }
}

static int read_all(FILE *f, rf_buf *b) {
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
    if (b->n + n > MAX_STDIN_BYTES) return -1;
    rf_buf_add(b, buf, n);
  }
  return ferror(f) ? -1 : 0;
}

/* "?"/"&" before the next query parameter of the target */
static void qsep(ctl *c) {
  rf_buf_str(&c->target, memchr(c->target.p, '?', c->target.n) ? "&" : "?");
}

static void add_flags(ctl *c) {
  if (c->stale) qsep(c), rf_buf_str(&c->target, "stale");
  if (c->redirect) qsep(c), rf_buf_str(&c->target, "redirect");
}

static int want_args(int argc, int min, int max, const char *cmd) {
  if (argc - 1 < min || argc - 1 > max) {
    fail_usage("'%s': wrong number of arguments", cmd);
    return 0;
  }
  return 1;
}

static int body_arg(ctl *c, int argc, char **argv, int i) {
  if (argc > i && strcmp(argv[i], "-") != 0) {
    rf_buf_str(&c->body, argv[i]);
    return 0;
  }
  if (read_all(stdin, &c->body) < 0) {
    fprintf(stderr, "rafting ctl: cannot read stdin (or over %u bytes)\n",
            MAX_STDIN_BYTES);
    return RF_CTL_USAGE;
  }
  return 0;
}

static int node_id(const char *s, unsigned long long *id) {
  if ((*id = rf_parse_id(s)) == 0)
    return fail_usage("'%s' is not a node id", s);
  return 0;
}

/* members add ID PEER HTTP | promote ID | remove ID: changes, never
** retried on another node (the leader may have made them). */
static int build_members(ctl *c, int argc, char **argv) {
  const char *sub = argv[1];
  unsigned long long id;
  int add = strcmp(sub, "add") == 0;
  if (!add && strcmp(sub, "promote") != 0 && strcmp(sub, "remove") != 0)
    return fail_usage("unknown members command '%s' (add, promote, remove)",
                      sub);
  if (argc != (add ? 5 : 3))
    return fail_usage("%s", add ? "members add ID PEER HTTP"
                                : "members promote|remove ID");
  if (node_id(argv[2], &id) != 0) return RF_CTL_USAGE;
  c->method = sub[0] == 'r' ? "DELETE" : "POST";
  c->idempotent = 0;
  rf_buf_str(&c->target, "/cluster/members");
  if (add) {
    rf_buf_printf(&c->body, "{\"id\":%llu,\"peer\":", id);
    rf_buf_json_str(&c->body, argv[3], strlen(argv[3]));
    rf_buf_str(&c->body, ",\"http\":");
    rf_buf_json_str(&c->body, argv[4], strlen(argv[4]));
    rf_buf_str(&c->body, "}");
  } else {
    rf_buf_printf(&c->target, "/%llu%s", id, sub[0] == 'p' ? "/promote" : "");
  }
  add_flags(c);
  return 0;
}

/* The body from FILE, '-' being stdin (any bytes, at most 64 MiB). */
static int file_body(ctl *c, const char *path) {
  FILE *f;
  int rc;
  if (strcmp(path, "-") == 0) return body_arg(c, 0, NULL, 0);
  if ((f = fopen(path, "rb")) == NULL) {
    fprintf(stderr, "rafting ctl: cannot open '%s': %s\n", path,
            strerror(errno));
    return RF_CTL_USAGE;
  }
  rc = read_all(f, &c->body);
  fclose(f);
  if (rc < 0) {
    fprintf(stderr, "rafting ctl: cannot read '%s' (or over %u bytes)\n",
            path, MAX_STDIN_BYTES);
    return RF_CTL_USAGE;
  }
  return 0;
}

/* script list | get NAME | put NAME FILE | delete NAME: /scripts.  A put
** or delete sent again after a lost answer leaves the same scripts. */
static int build_script(ctl *c, int argc, char **argv) {
  const char *sub = argc > 1 ? argv[1] : "";
  int list = strcmp(sub, "list") == 0, put = strcmp(sub, "put") == 0;
  if (!list && !put && strcmp(sub, "get") && strcmp(sub, "delete"))
    return fail_usage("%s", "script list | get NAME | put NAME FILE | "
                      "delete NAME");
  if (argc != (list ? 2 : put ? 4 : 3))
    return fail_usage("'script %s': wrong number of arguments", sub);
  rf_buf_str(&c->target, "/scripts");
  if (list) return 0;
  if (argv[2][0] == '\0') return fail_usage("%s", "empty script name");
  rf_buf_str(&c->target, "/");
  enc(&c->target, argv[2], strlen(argv[2]));
  if (sub[0] == 'g') c->raw = 1;
  else if (sub[0] == 'd') c->method = "DELETE";
  else c->method = "PUT";
  return put ? file_body(c, argv[3]) : 0;
}

/* The request for argv (argv[0] is the command).  0 or an exit status. */
static int build(ctl *c, int argc, char **argv) {
  const char *cmd = argv[0];
  c->method = "GET";
  c->idempotent = 1;
  if (strcmp(cmd, "put") == 0 || strcmp(cmd, "get") == 0 ||
      strcmp(cmd, "del") == 0) {
    int put = cmd[0] == 'p';
    if (!want_args(argc, 1, put ? 2 : 1, cmd)) return RF_CTL_USAGE;
    if (argv[1][0] == '\0') return fail_usage("%s", "empty key");
    rf_buf_str(&c->target, "/kv/");
    enc(&c->target, argv[1], strlen(argv[1]));
    if (put) {
      c->method = "PUT";
      return body_arg(c, argc, argv, 2);
    }
    if (cmd[0] == 'd') c->method = "DELETE";
    else c->raw = 1;
  } else if (strcmp(cmd, "ls") == 0) {
    if (!want_args(argc, 0, 1, cmd)) return RF_CTL_USAGE;
    c->prefix = argc > 1 ? argv[1] : ""; /* run_ls builds each page */
  } else if (strcmp(cmd, "cmd") == 0) {
    if (!want_args(argc, 1, 2, cmd)) return RF_CTL_USAGE;
    c->method = "POST";
    c->idempotent = 0;
    rf_buf_str(&c->target, "/cmd/");
    enc(&c->target, argv[1], strlen(argv[1]));
    if (argc == 2) rf_buf_str(&c->body, "{}");
    else return body_arg(c, argc, argv, 2);
  } else if (strcmp(cmd, "query") == 0) {
    if (argc < 2) return fail_usage("%s", "query NAME [K=V...]");
    rf_buf_str(&c->target, "/query/");
    enc(&c->target, argv[1], strlen(argv[1]));
    for (int i = 2; i < argc; i++) {
      const char *eq = strchr(argv[i], '=');
      if (eq == NULL || eq == argv[i])
        return fail_usage("query argument '%s' is not K=V", argv[i]);
      qsep(c);
      enc(&c->target, argv[i], (size_t)(eq - argv[i]));
      rf_buf_str(&c->target, "=");
      enc(&c->target, eq + 1, strlen(eq + 1));
    }
  } else if (strcmp(cmd, "members") == 0 && argc > 1) {
    return build_members(c, argc, argv);
  } else if (strcmp(cmd, "status") == 0 || strcmp(cmd, "members") == 0) {
    if (!want_args(argc, 0, 0, cmd)) return RF_CTL_USAGE;
    rf_buf_str(&c->target, cmd[0] == 's' ? "/status" : "/cluster");
  } else if (strcmp(cmd, "watch") == 0) {
    if (!want_args(argc, 1, 1, cmd)) return RF_CTL_USAGE;
    rf_buf_str(&c->target, "/watch?stream=1&prefix="); /* a line a batch */
    enc(&c->target, argv[1], strlen(argv[1]));
  } else if (strcmp(cmd, "script") == 0) {
    int rc = build_script(c, argc, argv);
    if (rc != 0) return rc;
  } else if (strcmp(cmd, "leader") == 0) {
    unsigned long long id;
    if (argc != 3 || strcmp(argv[1], "transfer") != 0)
      return fail_usage("%s", "leader transfer ID");
    if (node_id(argv[2], &id) != 0) return RF_CTL_USAGE;
    c->method = "POST";
    c->idempotent = 0;
    rf_buf_str(&c->target, "/cluster/leader");
    rf_buf_printf(&c->body, "{\"id\":%llu}", id);
  } else {
    return fail_usage("unknown command '%s'", cmd);
  }
  add_flags(c);
  return 0;
}

/* ---- sending ----------------------------------------------------------- */

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Wait before the next round: the backoff doubles from 100 ms to 1 s, never
** past the deadline.  0 once the deadline passed. */
static int backoff(uint64_t *ms, uint64_t deadline) {
  uint64_t now = rf_hc_now_ms();
  if (now >= deadline) return 0;
  sleep_ms(*ms < deadline - now ? *ms : deadline - now);
  *ms = *ms * 2 > 1000 ? 1000 : *ms * 2;
  return rf_hc_now_ms() < deadline;
}

static int unavailable(const char *why, const char *detail) {
  fprintf(stderr, "rafting ctl: unavailable: %s%s%s\n", why,
          detail ? ": " : "", detail ? detail : "");
  return RF_CTL_UNAVAILABLE;
}

/* Send c's request until an answer that is not 503/307 arrives (then *r
** holds it and 0 is returned) or the deadline passes (an exit status). */
static int send_loop(ctl *c, rf_hc_resp *r) {
  uint64_t deadline = rf_hc_now_ms() + (uint64_t)(c->timeout_s * 1000);
  uint64_t wait = 100;
  size_t i = 0, failed = 0, redirects = 0;
  rf_hc_url u = c->ep[0];
  rf_buf target;
  char err[256] = "", last[1024] = "";
  int rc;
  rf_buf_init(&target);
  rf_buf_add(&target, c->target.p, c->target.n + 1);
  for (;;) {
    rf_hc_req q = {c->method, target.p, c->body.p, c->body.n, c->token,
                   c->cacert, deadline, NULL};
    if (strncmp(target.p, "/watch", 6) == 0)
      q.stream = stdout; /* after the request, no deadline (see rf_hc_req) */
    rc = rf_hc_request(&u, &q, r, err, sizeof(err));
    if (rc == 0 && r->status != 503 && r->status != 307 && r->status != 308)
      break;
    if (rc == 0 && r->status != 503) { /* a redirect */
      const char *rest;
      if (r->location == NULL || ++redirects > MAX_REDIRECTS ||
          rf_hc_parse_url(r->location, c->cacert != NULL, &u, &rest, err,
                          sizeof(err)) < 0) {
        rc = unavailable("bad or too many redirects", r->location);
        goto done;
      }
      rf_buf_reset(&target);
      rf_buf_add(&target, *rest ? rest : "/", strlen(*rest ? rest : "/") + 1);
      rf_hc_resp_free(r);
      continue;
    }
    if (rc == 0) { /* 503: this node cannot serve it now */
      snprintf(last, sizeof(last), "%s:%d answered 503: %.*s", u.host, u.port,
               (int)(r->body.n > 300 ? 300 : r->body.n), r->body.p);
    } else {
      snprintf(last, sizeof(last), "%s:%d: %s", u.host, u.port, err);
      if (r->sent && !c->idempotent) {
        rc = unavailable("outcome unknown (the request was sent; check "
                         "before retrying)", last);
        goto done;
      }
    }
    rf_hc_resp_free(r);
    /* next endpoint; after a whole round, wait */
    i = (i + 1) % c->n_ep;
    u = c->ep[i];
    redirects = 0;
    rf_buf_reset(&target);
    rf_buf_add(&target, c->target.p, c->target.n + 1);
    if (++failed % c->n_ep == 0 && !backoff(&wait, deadline)) {
      rc = unavailable("gave up after --timeout", last);
      goto done;
    }
    if (rf_hc_now_ms() >= deadline) {
      rc = unavailable("gave up after --timeout", last);
      goto done;
    }
  }
done:
  rf_buf_free(&target);
  return rc;
}

/* ---- the answer -------------------------------------------------------- */

static int is_json(const rf_hc_resp *r) {
  return r->content_type && strstr(r->content_type, "json") != NULL;
}

static int answer(ctl *c, rf_hc_resp *r) {
  int st = r->status;
  size_t n = r->body.n;
  const char *p = r->body.p ? r->body.p : "";
  if (st / 100 == 2) {
    rf_buf o;
    if (c->raw || !is_json(r)) {
      fwrite(p, 1, n, stdout);
      return RF_CTL_OK;
    }
    rf_buf_init(&o);
    rf_ctl_json_pretty(&o, p, n);
    fwrite(o.p, 1, o.n, stdout);
    rf_buf_free(&o);
    return RF_CTL_OK;
  }
  while (n && (p[n - 1] == '\n' || p[n - 1] == '\r')) n--;
  fprintf(stderr, "rafting ctl: HTTP %d: %.*s%s\n", st,
          (int)(n > 2000 ? 2000 : n), p, st == 401 && c->token == NULL
          ? " (no token given: --token T or RAFTING_TOKEN)" : "");
  if (st == 404) return RF_CTL_NOTFOUND;
  if (st / 100 == 4) return RF_CTL_REFUSED;
  return RF_CTL_UNAVAILABLE;
}

/* ---- ls: every page of a prefix ---------------------------------------- */

/* The target of the page after `after` (NULL: the first). */
static void ls_target(ctl *c, const char *after, size_t have) {
  size_t want = LS_PAGE;
  if (c->limit > 0 && (size_t)c->limit - have < want)
    want = (size_t)c->limit - have;
  rf_buf_reset(&c->target);
  rf_buf_printf(&c->target, "/kv?limit=%zu&prefix=", want);
  enc(&c->target, c->prefix, strlen(c->prefix));
  if (after != NULL) {
    rf_buf_str(&c->target, "&start_after=");
    enc(&c->target, after, strlen(after));
  }
  add_flags(c);
  rf_buf_add(&c->target, "", 1); /* NUL-terminate, not counted */
  c->target.n--;
}

/* One page into items; its "next" (malloc'd) while more remain, else NULL.
** 0 or an exit status (the answer printed when it is an error). */
static int ls_page(ctl *c, json_t *items, char **next) {
  rf_hc_resp r;
  json_t *page = NULL, *more;
  int rc;
  memset(&r, 0, sizeof(r));
  *next = NULL;
  if (c->target.oom) return unavailable("out of memory", NULL);
  if ((rc = send_loop(c, &r)) == 0 && r.status / 100 != 2) rc = answer(c, &r);
  if (rc == 0 && ((page = json_loadb(r.body.p ? r.body.p : "", r.body.n,
                                     JSON_ALLOW_NUL,
                                     NULL)) == NULL ||
                  json_array_extend(items, json_object_get(page, "items"))))
    rc = unavailable("the node's answer to GET /kv is not a page", NULL);
  more = rc == 0 ? json_object_get(page, "more") : NULL;
  if (json_is_true(more) && json_string_value(json_object_get(page, "next")))
    *next = strdup(json_string_value(json_object_get(page, "next")));
  json_decref(page);
  rf_hc_resp_free(&r);
  return rc;
}

/* ls PREFIX: GET /kv pages, start_after = the last page's next, until no
** more remain or --limit items came; printed as one indented object. */
static int run_ls(ctl *c) {
  json_t *items = json_array(), *all;
  char *after = NULL, *next = NULL;
  int rc = 0;
  do {
    ls_target(c, after, json_array_size(items));
    rc = ls_page(c, items, &next);
    free(after);
    after = next;
  } while (rc == 0 && after != NULL &&
           (c->limit == 0 || json_array_size(items) < (size_t)c->limit));
  if (rc == 0) {
    all = json_pack("{s:O,s:b}", "items", items, "more", after != NULL);
    if (all == NULL || json_dumpf(all, stdout, JSON_INDENT(2) |
                                  JSON_PRESERVE_ORDER) < 0)
      rc = unavailable("out of memory", NULL);
    else
      fputc('\n', stdout);
    json_decref(all);
    if (rc == 0 && after != NULL)
      fprintf(stderr, "rafting ctl: more keys under this prefix; --limit "
              "stopped the listing\n");
  }
  free(after);
  json_decref(items);
  return rc;
}

/* ---- options ----------------------------------------------------------- */

static int parse_endpoints(ctl *c, const char *list) {
  char err[256], *copy = strdup(list), *save = NULL;
  int rc = 0;
  if (copy == NULL) return fail_usage("%s", "out of memory");
  c->n_ep = 0;
  for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
    const char *rest;
    if (*s == '\0') continue;
    if (c->n_ep == MAX_ENDPOINTS) {
      rc = fail_usage("%s", "too many endpoints");
      break;
    }
    if (rf_hc_parse_url(s, c->cacert != NULL, &c->ep[c->n_ep], &rest, err,
                        sizeof(err)) < 0 || (*rest && strcmp(rest, "/"))) {
      rc = fail_usage("bad endpoint: %s", *err ? err : s);
      break;
    }
    if (c->cacert) c->ep[c->n_ep].tls = 1;
    c->n_ep++;
  }
  free(copy);
  if (rc == 0 && c->n_ep == 0) rc = fail_usage("%s", "no endpoints");
  return rc;
}

static int parse_opts(ctl *c, int argc, char **argv, int *first) {
  const char *endpoints = getenv("RAFTING_ENDPOINTS");
  int i;
  c->token = getenv("RAFTING_TOKEN");
  if (c->token && *c->token == '\0') c->token = NULL; /* set but empty */
  c->timeout_s = 10;
  c->limit = 0;
  for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    char *end;
    if (strcmp(a, "--help") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--stale") == 0) { c->stale = 1; continue; }
    if (strcmp(a, "--redirect") == 0) { c->redirect = 1; continue; }
    if (strcmp(a, "--endpoints") && strcmp(a, "--token") &&
        strcmp(a, "--cacert") && strcmp(a, "--timeout") &&
        strcmp(a, "--limit"))
      return fail_usage("unknown option '%s'", a);
    if (v == NULL) return fail_usage("%s needs a value", a);
    i++;
    if (strcmp(a, "--endpoints") == 0) endpoints = v;
    else if (strcmp(a, "--token") == 0) c->token = v;
    else if (strcmp(a, "--cacert") == 0) c->cacert = v;
    else if (strcmp(a, "--timeout") == 0) {
      c->timeout_s = strtod(v, &end);
      if (*end || end == v || !(c->timeout_s > 0 && c->timeout_s <= 86400))
        return fail_usage("--timeout wants seconds (0..86400], not '%s'", v);
    } else {
      c->limit = strtol(v, &end, 10);
      if (*end || end == v || c->limit < 1)
        return fail_usage("--limit wants a positive number, not '%s'", v);
    }
  }
  if (c->token && (*c->token == '\0' || strpbrk(c->token, "\r\n")))
    return fail_usage("%s", "the token is empty or has a line break");
  if (c->cacert && access(c->cacert, R_OK) != 0)
    return fail_usage("cannot read --cacert '%s'", c->cacert);
  if (i >= argc) return fail_usage("%s", "a COMMAND is required");
  *first = i;
  return parse_endpoints(c, endpoints && *endpoints ? endpoints
                                                    : DEFAULT_ENDPOINTS);
}

int rf_ctl_main(int argc, char **argv) {
  ctl c;
  rf_hc_resp r;
  int first = 0, rc;
  memset(&c, 0, sizeof(c));
  memset(&r, 0, sizeof(r));
  rf_buf_init(&c.target);
  rf_buf_init(&c.body);
  if (argc > 1 && strcmp(argv[1], "-h") == 0) {
    usage(stdout);
    return 0;
  }
  if ((rc = parse_opts(&c, argc, argv, &first)) == 0 &&
      (rc = build(&c, argc - first, argv + first)) == 0) {
    rf_buf_add(&c.target, "", 1); /* NUL-terminate, not counted */
    c.target.n--;
    if (c.target.oom || c.body.oom) rc = unavailable("out of memory", NULL);
    else if (c.prefix != NULL) rc = run_ls(&c);
    else if ((rc = send_loop(&c, &r)) == 0) rc = answer(&c, &r);
  }
  rf_hc_resp_free(&r);
  rf_buf_free(&c.target);
  rf_buf_free(&c.body);
  return rc;
}
