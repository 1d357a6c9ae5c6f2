/*
** launch.c -- `rafting cluster`: run every node of a config as a child.
**
** One `rafting --config F --node ID` per node, forked from here.  The
** launcher prints where each node listens, polls GET /status until a node
** reports leader, then sleeps in sigwaitinfo(): SIGINT/SIGTERM are forwarded
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
#include <netdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>

#include "rafting/config.h"
#include "rafting/launch.h"

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
  const char *log_level;
  char exe_buf[PATH_MAX];
} launcher;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timespec ms_ts(int64_t ms) {
  struct timespec ts;
  if (ms < 0) ms = 0;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)(ms % 1000) * 1000000;
  return ts;
}

/* "[::1]" for IPv6 literals, so "host:port" stays unambiguous. */
static const char *br(const char *host, int open) {
  return strchr(host, ':') ? (open ? "[" : "]") : "";
}

/* -- children ----------------------------------------------------------- */

/* In the child after fork: only async-signal-safe calls. */
static void exec_node(const launcher *l, const child *k, pid_t parent) {
  char *argv[8];
  static const char msg[] = "rafting cluster: exec failed\n";
  argv[0] = (char *)l->exe;
  argv[1] = "--config";
  argv[2] = (char *)l->config_path;
  argv[3] = "--node";
  argv[4] = (char *)k->id;
  argv[5] = "--log-level";
  argv[6] = (char *)l->log_level;
  argv[7] = NULL;
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
  int64_t deadline = now_ms() + STOP_WAIT_MS;
  printf("stopping %zu node(s)\n", l->running);
  fflush(stdout);
  signal_all(l, SIGTERM);
  while (l->running > 0) {
    struct timespec ts = ms_ts(deadline - now_ms());
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

/* Reads the response into buf (NUL-terminated); returns the body or NULL.
** SO_SNDTIMEO bounds connect() too on Linux, so nothing here can hang. */
static const char *get_status(const rf_node_conf *n, char *buf, size_t len) {
  struct addrinfo hints, *ai = NULL, *a;
  struct timeval tv = { 0, HTTP_TIMEOUT_MS * 1000 };
  char port[16], req[256];
  size_t got = 0;
  int fd = -1;

  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  snprintf(port, sizeof port, "%d", n->http_port);
  if (getaddrinfo(n->http_host, port, &hints, &ai) != 0) return NULL;
  for (a = ai; a; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(ai);
  if (fd < 0) return NULL;
  int rl = snprintf(req, sizeof req,
                    "GET /status HTTP/1.1\r\nHost: %s%s%s:%d\r\n"
                    "Connection: close\r\n\r\n",
                    br(n->http_host, 1), n->http_host, br(n->http_host, 0),
                    n->http_port);
  if (send(fd, req, (size_t)rl, MSG_NOSIGNAL) != rl) { close(fd); return NULL; }
  const char *body = NULL;
  long want = -1;
  while (got + 1 < len) {
    ssize_t r = recv(fd, buf + got, len - 1 - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
    buf[got] = '\0';
    if (!body && (body = strstr(buf, "\r\n\r\n")) != NULL) {
      body += 4;
      const char *cl = strcasestr(buf, "\r\ncontent-length:");
      if (cl && cl < body) want = strtol(cl + 17, NULL, 10);
    }
    if (body && want >= 0 && (long)(buf + got - body) >= want) break;
  }
  close(fd);
  buf[got] = '\0';
  if (!body || strncmp(buf, "HTTP/1.", 7) != 0 || strncmp(buf + 8, " 200", 4))
    return NULL;
  return body;
}

/* The value of a top-level "key" in a flat JSON object: a string (unquoted
** into out) or a number.  /status is small and ours; a scan is enough and
** keeps a JSON library out of the launcher. */
static int json_field(const char *json, const char *key, char *out, size_t len) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\"", key);
  const char *p = strstr(json, pat);
  if (!p) return -1;
  p += strlen(pat);
  p += strspn(p, " \t\r\n");
  if (*p++ != ':') return -1;
  p += strspn(p, " \t\r\n");
  int quoted = *p == '"';
  size_t i = 0;
  if (quoted) p++;
  while (*p && i + 1 < len && (quoted ? *p != '"' : strchr(",} \r\n", *p) == NULL))
    out[i++] = *p++;
  out[i] = '\0';
  return 0;
}

/* The node saying leader in the highest term, or NULL. */
static const child *find_leader(launcher *l) {
  char buf[16384];
  const child *best = NULL;
  unsigned long long best_term = 0;
  for (size_t i = 0; i < l->n; i++) {
    char role[32], term[32];
    if (l->kids[i].pid <= 0) continue;
    const char *body = get_status(l->kids[i].conf, buf, sizeof buf);
    if (!body || json_field(body, "role", role, sizeof role) < 0) continue;
    if (strcmp(role, "leader") != 0) continue;
    unsigned long long t = json_field(body, "term", term, sizeof term) == 0
                           ? strtoull(term, NULL, 10) : 0;
    if (!best || t > best_term) { best = &l->kids[i]; best_term = t; }
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
  for (size_t i = 0; i < l->n; i++) {
    child *k = &l->kids[i];
    if (start_child(l, k) < 0) return 1;
    printf("node %s: peer %s%s%s:%d  http http://%s%s%s:%d  (pid %d)\n", k->id,
           br(k->conf->peer_host, 1), k->conf->peer_host,
           br(k->conf->peer_host, 0), k->conf->peer_port,
           br(k->conf->http_host, 1), k->conf->http_host,
           br(k->conf->http_host, 0), k->conf->http_port, (int)k->pid);
  }
  fflush(stdout);

  int64_t deadline = now_ms() + LEADER_WAIT_MS;
  for (;;) {
    const child *lead = find_leader(l);
    if (lead) {
      printf("leader: node %s (http://%s%s%s:%d)\n", lead->id,
             br(lead->conf->http_host, 1), lead->conf->http_host,
             br(lead->conf->http_host, 0), lead->conf->http_port);
      break;
    }
    if (l->running == 0) break;
    int64_t left = deadline - now_ms();
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
                      const char *log_level) {
  launcher l;
  char err[1024];
  memset(&l, 0, sizeof l);
  l.config_path = config_path;
  l.log_level = log_level ? log_level : "info";
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
