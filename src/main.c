/*
** main.c -- the rafting command line.
**
**   rafting --config FILE --node ID [--log-level L] [--log-format F]  one node
**           [--peer HOST:PORT --http HOST:PORT] [--join]   (docs/membership.md)
**   rafting cluster --config FILE [--log-level L] [--log-format F]  all nodes
**   rafting ctl [OPTIONS] COMMAND ...               the client (src/ctl/)
**   rafting restore --snapshot F --config F --node ID [--data DIR]
**                                           a data directory from a backup
**
** Exit status: 0 after a clean stop (SIGTERM/SIGINT), 1 when the node fails
** at run time, 2 for usage and configuration errors.
*/
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "ctl/ctl.h"
#include "handover.h"
#include "restore.h"
#include "rafting/util.h"
#include "rafting/config.h"
#include "rafting/error.h"
#include "rafting/launch.h"
#include "rafting/log.h"
#include "rafting/node.h"
#include "rafting/notify.h"

#include "gitrev.h" /* generated: RAFTING_GIT_REV */
#ifndef RAFTING_BUILD_TYPE
#define RAFTING_BUILD_TYPE "unknown"
#endif

typedef struct options {
  int cluster;
  const char *config;
  const char *node;
  const char *level;   /* NULL: the config's log.level, else info */
  const char *format;  /* NULL: the config's log.format, else text */
  const char *peer;    /* this node's own addresses, or NULL */
  const char *http;
  int join;            /* start empty and wait to be added */
} options;

static void usage(FILE *f) {
  fprintf(f,
    "usage: rafting --config FILE --node ID [--log-level LEVEL] [--log-format F]\n"
    "               [--peer HOST:PORT --http HOST:PORT] [--join]\n"
    "       rafting cluster --config FILE [--log-level LEVEL] [--log-format F]\n"
    "       rafting ctl [OPTIONS] COMMAND ...  (see rafting ctl --help)\n"
    "       rafting restore --snapshot FILE --config FILE --node ID [--data DIR]\n"
    "       rafting --help | --version\n"
    "\n"
    "Runs one node of a Raft cluster described by a Lua config file, or with\n"
    "'cluster', starts every node of the config as child processes.\n"
    "\n"
    "  --config FILE      cluster config (see config/local3.lua)\n"
    "  --node ID          which node of the config this process is\n"
    "  --peer HOST:PORT   this node's peer address, --http HOST:PORT its REST\n"
    "                     address: for a node not in the config's nodes, or\n"
    "                     to override them (stored in the data directory)\n"
    "  --join             a new node: needs an empty data directory, does not\n"
    "                     bootstrap, waits to be added (POST /cluster/members);\n"
    "                     once a member, restart it without --join\n"
    "  --log-level LEVEL  debug, info (default), warn or error\n"
    "  --log-format F     text (default) or json; both override the config's\n"
    "                     log = { level = ..., format = ... }\n");
}

static int fail_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "rafting: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'rafting --help'.\n");
  return 2;
}

static int parse(int argc, char **argv, options *o) {
  int i = 1;
  memset(o, 0, sizeof(*o));
  if (argc > 1 && strcmp(argv[1], "cluster") == 0) {
    o->cluster = 1;
    i = 2;
  }
  for (; i < argc; i++) {
    const char *a = argv[i];
    const char **slot = NULL;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      exit(0);
    }
    if (strcmp(a, "--version") == 0) {
      printf("rafting %s (git %s, %s build)\n", RAFTING_VERSION,
             RAFTING_GIT_REV, RAFTING_BUILD_TYPE);
      exit(0);
    }
    if (strcmp(a, "--join") == 0) {
      o->join = 1;
      continue;
    }
    if (strcmp(a, "--config") == 0) slot = &o->config;
    else if (strcmp(a, "--peer") == 0) slot = &o->peer;
    else if (strcmp(a, "--http") == 0) slot = &o->http;
    else if (strcmp(a, "--node") == 0) slot = &o->node;
    else if (strcmp(a, "--log-level") == 0) slot = &o->level;
    else if (strcmp(a, "--log-format") == 0) slot = &o->format;
    else return fail_usage("unknown argument '%s'", a);
    if (i + 1 >= argc) return fail_usage("%s needs a value", a);
    *slot = argv[++i];
  }
  if (o->config == NULL) return fail_usage("%s", "--config FILE is required");
  if (!o->cluster && o->node == NULL)
    return fail_usage("%s", "--node ID is required (or use 'rafting cluster')");
  if (o->cluster && (o->join || o->peer || o->http))
    return fail_usage("%s", "--join, --peer and --http are for one node");
  if (o->join && (o->peer == NULL || o->http == NULL))
    return fail_usage("%s", "--join needs --peer HOST:PORT and --http HOST:PORT");
  if (o->level && rf_log_level_parse(o->level) < 0)
    return fail_usage("unknown log level '%s' (debug, info, warn, error)",
                      o->level);
  if (o->format && rf_log_format_parse(o->format) < 0)
    return fail_usage("unknown log format '%s' (text, json)", o->format);
  return 0;
}

/* -- one node ----------------------------------------------------------- */

typedef struct runner {
  rf_node *node;
  const rf_config *cfg;
  uv_signal_t sigterm, sigint;
  uv_timer_t leave;      /* removed from the cluster: stop shortly */
  int stopping; /* 1: handing leadership over, 2: closing */
  rf_handover *handover; /* while stopping == 1 */
} runner;

static void on_stopped(void *ud) {
  runner *r = ud;
  uv_close((uv_handle_t *)&r->sigterm, NULL);
  uv_close((uv_handle_t *)&r->sigint, NULL);
  uv_close((uv_handle_t *)&r->leave, NULL);
}

static void stop_now(runner *r) {
  if (r->stopping == 2) return;
  r->stopping = 2;
  rf_node_stop(r->node, on_stopped, r);
}

static void on_handed_over(void *ud, int moved) {
  runner *r = ud;
  (void)moved;
  r->handover = NULL;
  stop_now(r);
}

static void on_leave(uv_timer_t *t) { stop_now(t->data); }

/* Removed by a committed configuration: no member to hand over to, but a
** few heartbeats more let the last frames (the commit that removed us)
** leave before the connections close. */
static void on_removed(void *ud, uint64_t index) {
  runner *r = ud;
  (void)index;
  if (r->stopping) return;
  r->stopping = 1;
  rf_notify("STOPPING=1");
  uv_timer_start(&r->leave, on_leave,
                 (uint64_t)(2 * r->cfg->heartbeat_ticks * r->cfg->tick_ms), 0);
}

/* A leader hands over first (src/handover.c); a second signal stops now. */
static void on_signal(uv_signal_t *h, int signum) {
  runner *r = h->data;
  rf_logrec l;
  if (r->stopping) {
    if (r->handover) rf_handover_cancel(r->handover);
    if (r->stopping == 2) rf_node_stop(r->node, on_stopped, r); /* now */
    return;
  }
  r->stopping = 1;
  rf_log_begin(&l, RF_INFO, "stopping");
  rf_log_i64(&l, "signal", signum);
  rf_log_end(&l);
  rf_notify("STOPPING=1");
  if (rf_handover_start(h->loop, r->node, r->cfg,
                        on_handed_over, r, &r->handover) < 0)
    stop_now(r);
}

static int run_node(const rf_config *cfg, uint64_t id, const options *o) {
  uv_loop_t loop;
  runner r;
  rf_node_opts no = {o->join, o->peer, o->http, on_removed, NULL};
  int rc;
  memset(&r, 0, sizeof(r));
  r.cfg = cfg;
  no.ud = &r;
  signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop);
  uv_timer_init(&loop, &r.leave);
  r.leave.data = &r;
  if ((rc = rf_node_start(&loop, cfg, id, &no, &r.node)) < 0) {
    uv_close((uv_handle_t *)&r.leave, NULL);
    uv_run(&loop, UV_RUN_DEFAULT); /* let half-opened handles close */
    uv_loop_close(&loop);
    return rc == RF_NODE_ESCRIPT || rc == RF_NODE_ESTORAGE ||
           rc == RF_ECONFIG ? 2 : 1;
  }
  uv_signal_init(&loop, &r.sigterm);
  uv_signal_init(&loop, &r.sigint);
  r.sigterm.data = r.sigint.data = &r;
  uv_signal_start(&r.sigterm, on_signal, SIGTERM);
  uv_signal_start(&r.sigint, on_signal, SIGINT);
  /* listening on both ports: ready for systemd's Type=notify */
  if ((rc = rf_notify("READY=1")) < 0)
    rf_log(RF_WARN, "NOTIFY_SOCKET: %s", rf_strerror(rc));
  uv_run(&loop, UV_RUN_DEFAULT);
  rc = uv_loop_close(&loop);
  rf_log(RF_INFO, "stopped");
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  options o;
  rf_config cfg;
  char err[1024];
  uint64_t id = 0;
  int rc;
  if (argc > 1 && strcmp(argv[1], "ctl") == 0)
    return rf_ctl_main(argc - 1, argv + 1);
  if (argc > 1 && strcmp(argv[1], "restore") == 0)
    return rf_restore_main(argc - 1, argv + 1);
  if ((rc = parse(argc, argv, &o)) != 0) return rc;
  if (o.cluster)
    return rf_launch_cluster(argv[0], o.config, o.level, o.format);
  if ((id = rf_parse_id(o.node)) == 0)
    return fail_usage("--node wants a positive integer id, not '%s'", o.node);
  if (rf_config_load(o.config, &cfg, err, sizeof(err)) < 0) {
    fprintf(stderr, "rafting: %s\n", err);
    return 2;
  }
  rf_log_init(id, o.level ? rf_log_level_parse(o.level) : cfg.log_level);
  rf_log_set_format(o.format ? rf_log_format_parse(o.format) : cfg.log_format);
  rc = run_node(&cfg, id, &o);
  rf_config_free(&cfg);
  return rc;
}
