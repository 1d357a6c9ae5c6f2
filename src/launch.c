/*
** launch.c -- `rafting cluster`: run every node of a config as a child.
**
** One `rafting --config F --node ID` per node, forked from here.  The
** launcher prints where each node listens, polls GET /status (llhttp parses
** the answer, jansson its body) until a node reports leader, then sleeps in sigwaitinfo(): SIGINT/SIGTERM are forwarded
** as SIGTERM to every child (SIGKILL after 5 s or at a second signal), a
** child that dies is reported and left dead.
**
** Signals are blocked and taken synchronously (sigtimedwait/sigwaitinfo):
** no handlers, no flags, no busy loop.  Children carry PR_SET_PDEATHSIG, so
** they die with the launcher even if it is SIGKILLed.
**
** Memory: the launcher owns the config and the child table and frees both
** before returning.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <jansson.h>
#include <llhttp.h>

#include "rafting/buf.h"
#include "rafting/config.h"
#include "rafting/launch.h"
#include "rafting/util.h"

#define LEADER_WAIT_MS 10000  /* how long to look for a first leader */
#define POLL_MS 100           /* between /status rounds */
#define HTTP_TIMEOUT_MS 300   /* one /status request, connect included */
#define STOP_WAIT_MS 5000     /* SIGTERM -> exit, before SIGKILL */

typedef struct child {
  const rf_node_conf *conf;
  pid_t pid;                  /* 0: not running (never started, or reaped) */
  char id[24];
} child;

typedef struct launcher {
  rf_config cfg;
  child *kids;
  size_t n, running;
  sigset_t mask, oldmask;     /* mask: INT, TERM, CHLD; oldmask for children */
  const char *exe;
  const char *config_path;
  const char *log_level;  /* NULL: the children read the config's */
  const char *log_format;
  char exe_buf[PATH_MAX];
} launcher;

static struct timespec ms_ts(int64_t ms) {
  struct timespec ts;
  if (ms < 0) ms = 0;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000;
  return ts;
}

/* -- children ----------------------------------------------------------- */

/* In the child after fork: only async-signal-safe calls. */
static void exec_node(const launcher *l, const child *k, pid_t parent) {
  char *argv[10];
  static const char msg[] = "rafting cluster: exec failed\n";
  int i = 5;
  argv[0] = (char *)l->exe;
  argv[1] = "--config";
  argv[2] = (char *)l->config_path;
  argv[3] = "--node";
  argv[4] = (char *)k->id;
  if (l->log_level) {
    argv[i++] = "--log-level";
    argv[i++] = (char *)l->log_level;
  }
  if (l->log_format) {
    argv[i++] = "--log-format";
    argv[i++] = (char *)l->log_format;
  }
  argv[i] = NULL;
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGPIPE, SIG_DFL);
  sigprocmask(SIG_SETMASK, &l->oldmask, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(127);
  execv(l->exe, argv);
  if (write(2, msg, sizeof msg - 1) < 0) { /* nothing left to try */ }
  _exit(127);
}

static int start_child(launcher *l, child *k) {
  pid_t parent = getpid();
  fflush(NULL); /* or the child would inherit and repeat buffered output */
  pid_t pid = fork();
  if (pid == 0) exec_node(l, k, parent);
  if (pid < 0) {
    fprintf(stderr, "rafting: fork for node %s: %s\n", k->id, strerror(errno));
    return -1;
  }
  k->pid = pid;
  l->running++;
  return 0;
}

static void describe_exit(char *out, size_t len, int st) {
  if (WIFEXITED(st))
    snprintf(out, len, "exited with status %d", WEXITSTATUS(st));
  else if (WIFSIGNALED(st))
    snprintf(out, len, "killed by signal %d (%s)", WTERMSIG(st),
             strsignal(WTERMSIG(st)));
  else
    snprintf(out, len, "changed state (0x%x)", st);
}

/* Reap every child that exited; stopping says whether we asked them to. */
static void reap(launcher *l, int stopping) {
  pid_t pid;
  int st;
  while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
    for (size_t i = 0; i < l->n; i++) {
      child *k = &l->kids[i];
      if (k->pid != pid) continue;
      char how[96];
      describe_exit(how, sizeof how, st);
      k->pid = 0;
      l->running--;
      if (stopping && WIFEXITED(st) && WEXITSTATUS(st) == 0)
        printf("node %s stopped\n", k->id);
      else
        printf("rafting: node %s (pid %d) %s%s\n", k->id, (int)pid, how,
               stopping || l->running == 0 ? "" : "; the others keep running");
      fflush(stdout);
    }
  }
}

static void signal_all(launcher *l, int sig) {
  for (size_t i = 0; i < l->n; i++)
    if (l->kids[i].pid > 0) kill(l->kids[i].pid, sig);
}

/* SIGTERM all, wait up to STOP_WAIT_MS (a second INT/TERM cuts it short),
** then SIGKILL what is left and reap it. */
static void stop_all(launcher *l) {
  int64_t deadline = rf_now_ms() + STOP_WAIT_MS;
  printf("stopping %zu node(s)\n", l->running);
  fflush(stdout);
  signal_all(l, SIGTERM);
  while (l->running > 0) {
    struct timespec ts = ms_ts(deadline - rf_now_ms());
    int sig = sigtimedwait(&l->mask, NULL, &ts);
    if (sig == SIGCHLD) reap(l, 1);
    else if (sig == SIGINT || sig == SIGTERM || (sig < 0 && errno == EAGAIN)) {
      printf("rafting: killing %zu node(s)\n", l->running);
      signal_all(l, SIGKILL);
      while (l->running > 0) {
        int st;
        pid_t pid = waitpid(-1, &st, 0);
        if (pid < 0 && errno != EINTR) break;
        for (size_t i = 0; pid > 0 && i < l->n; i++)
          if (l->kids[i].pid == pid) { l->kids[i].pid = 0; l->running--; }
      }
    }
  }
}

/* -- GET /status over a blocking socket with timeouts ------------------- */

#define STATUS_MAX (64 << 10) /* a /status body is well under 1 KiB */

/* What one GET /status gathered while llhttp parsed it. */
typedef struct status_rsp {
  rf_buf body;
  int done;
} status_rsp;

static int on_body(llhttp_t *p, const char *at, size_t n) {
  status_rsp *r = p->data;
  if (r->body.n + n > STATUS_MAX) return -1;
  rf_buf_add(&r->body, at, n);
  return r->body.oom ? -1 : 0;
}

static int on_message_complete(llhttp_t *p) {
  ((status_rsp *)p->data)->done = 1;
  return HPE_PAUSED; /* one response is all we read */
}

/* A connected blocking socket, or -1.  SO_SNDTIMEO bounds connect() too on
** Linux, and SO_RCVTIMEO every recv(), so nothing here can hang. */
static int dial(const rf_node_conf *n) {
  struct sockaddr_storage ss;
  struct timeval tv = { 0, HTTP_TIMEOUT_MS * 1000 };
  int fd;
  if (rf_addr_resolve(n->http_host, n->http_port, &ss) < 0) return -1;
  fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, (struct sockaddr *)&ss, ss.ss_family == AF_INET6
                  ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in))) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The parsed body of a 200 answer to GET /status (the caller decrefs it),
** or NULL. */
static json_t *get_status(const rf_node_conf *n) {
  static llhttp_settings_t settings;
  char req[RF_ADDR_MAX + 64], host[RF_ADDR_MAX], buf[4096];
  status_rsp r = { { NULL, 0, 0, 0 }, 0 };
  llhttp_errno_t e = HPE_OK;
  llhttp_t parser;
  json_t *doc = NULL;
  int fd = dial(n);
  if (fd < 0) return NULL;
  if (settings.on_body == NULL) {
    llhttp_settings_init(&settings);
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;
  }
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  parser.data = &r;
  rf_addr_format(host, sizeof host, n->http_host, n->http_port);
  int rl = snprintf(req, sizeof req, "GET /status HTTP/1.1\r\nHost: %s\r\n"
                    "Connection: close\r\n\r\n", host);
  if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) goto done;
  while (!r.done && e == HPE_OK) {
    ssize_t got = recv(fd, buf, sizeof buf, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) break; /* timed out or reset */
    e = got == 0 ? llhttp_finish(&parser)
                 : llhttp_execute(&parser, buf, (size_t)got);
    if (got == 0) break;
  }
  if (r.done && parser.status_code == 200)
    doc = json_loadb(r.body.p ? r.body.p : "", r.body.n, 0, NULL);
done:
  close(fd);
  rf_buf_free(&r.body);
  return doc;
}

/* The node saying leader in the highest term, or NULL. */
static const child *find_leader(launcher *l) {
  const child *best = NULL;
  json_int_t best_term = 0;
  for (size_t i = 0; i < l->n; i++) {
    if (l->kids[i].pid <= 0) continue;
    json_t *st = get_status(l->kids[i].conf);
    const char *role = json_string_value(json_object_get(st, "role"));
    json_int_t t = json_integer_value(json_object_get(st, "term"));
    if (role && strcmp(role, "leader") == 0 && (!best || t > best_term)) {
      best = &l->kids[i];
      best_term = t;
    }
    json_decref(st);
  }
  return best;
}

/* -- the launcher ------------------------------------------------------- */

/* One signal (or a timeout after ms, or forever if ms < 0).  Returns 1
** when asked to stop. */
static int wait_signal(launcher *l, int64_t ms) {
  siginfo_t info;
  int sig;
  if (ms < 0) {
    sig = sigwaitinfo(&l->mask, &info);
  } else {
    struct timespec ts = ms_ts(ms);
    sig = sigtimedwait(&l->mask, &info, &ts);
  }
  if (sig == SIGCHLD) reap(l, 0);
  return sig == SIGINT || sig == SIGTERM;
}

static int run(launcher *l) {
  const char *scheme = l->cfg.tls_ca ? "https" : "http";
  for (size_t i = 0; i < l->n; i++) {
    child *k = &l->kids[i];
    char peer[RF_ADDR_MAX], http[RF_ADDR_MAX];
    if (start_child(l, k) < 0) return 1;
    rf_addr_format(peer, sizeof peer, k->conf->peer_host, k->conf->peer_port);
    rf_addr_format(http, sizeof http, k->conf->http_host, k->conf->http_port);
    printf("node %s: peer %s  http %s://%s  (pid %d)\n", k->id, peer, scheme,
           http, (int)k->pid);
  }
  fflush(stdout);

  int64_t deadline = rf_now_ms() + LEADER_WAIT_MS;
  /* /status is HTTPS only with tls: the launcher's client is plaintext */
  for (; l->cfg.tls_ca == NULL;) {
    const child *lead = find_leader(l);
    if (lead) {
      char http[RF_ADDR_MAX];
      rf_addr_format(http, sizeof http, lead->conf->http_host,
                     lead->conf->http_port);
      printf("leader: node %s (http://%s)\n", lead->id, http);
      break;
    }
    if (l->running == 0) break;
    int64_t left = deadline - rf_now_ms();
    if (left <= 0) {
      printf("rafting: no leader after %d s; the nodes keep running\n",
             LEADER_WAIT_MS / 1000);
      break;
    }
    if (wait_signal(l, left < POLL_MS ? left : POLL_MS)) return 0;
  }
  if (l->running > 0) printf("Ctrl-C stops every node\n");
  fflush(stdout);
  while (l->running > 0)
    if (wait_signal(l, -1)) return 0;
  printf("rafting: every node has exited\n");
  return 1;
}

int rf_launch_cluster(const char *self_exe, const char *config_path,
                      const char *log_level, const char *log_format) {
  launcher l;
  char err[1024];
  memset(&l, 0, sizeof l);
  l.config_path = config_path;
  l.log_level = log_level;
  l.log_format = log_format;
  if (rf_config_load(config_path, &l.cfg, err, sizeof err) < 0) {
    fprintf(stderr, "rafting: %s\n", err);
    return 2;
  }
  /* Exec the very binary that runs, wherever argv[0] pointed. */
  ssize_t n = readlink("/proc/self/exe", l.exe_buf, sizeof l.exe_buf - 1);
  if (n > 0) {
    l.exe_buf[n] = '\0';
    l.exe = l.exe_buf;
  } else {
    l.exe = self_exe;
  }
  l.n = l.cfg.n_nodes;
  l.kids = calloc(l.n ? l.n : 1, sizeof *l.kids);
  if (!l.kids) {
    fprintf(stderr, "rafting: out of memory\n");
    rf_config_free(&l.cfg);
    return 1;
  }
  for (size_t i = 0; i < l.n; i++) {
    l.kids[i].conf = &l.cfg.nodes[i];
    snprintf(l.kids[i].id, sizeof l.kids[i].id, "%llu",
             (unsigned long long)l.cfg.nodes[i].id);
  }
  /* A blocked SIGCHLD is queued even at its default disposition; an
  ** inherited SIG_IGN would make the kernel reap children for us. */
  signal(SIGCHLD, SIG_DFL);
  sigemptyset(&l.mask);
  sigaddset(&l.mask, SIGINT);
  sigaddset(&l.mask, SIGTERM);
  sigaddset(&l.mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &l.mask, &l.oldmask);

  int rc = run(&l);
  if (l.running > 0) stop_all(&l);
  sigprocmask(SIG_SETMASK, &l.oldmask, NULL);
  free(l.kids);
  rf_config_free(&l.cfg);
  fflush(stdout);
  return rc;
}
