/*
** snapfork.c -- a snapshot written by a fork()ed child (see snapfork.h).
**
** After fork() the child is a single thread in a copy of a multithreaded
** process: the WAL's and libuv's workers are gone, maybe holding locks
** (malloc's among them).  So the child calls only async-signal-safe system
** calls and code that neither allocates nor locks: the store's iteration,
** rf_snap_write into a buffer allocated before the fork, XXH3 on the stack.
** It first closes every descriptor it does not need: the node's sockets
** must close when the node closes them.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rafting/log.h"
#include "snapfork.h"

#define BUF_BYTES (1 << 20) /* the child's write buffer */
/* The child starts writeback every PACE_BYTES and waits for the range
** before: the page cache never holds more than two of them dirty, so the
** final fsync is short and the node's WAL fdatasyncs (which on ext4 wait
** for the data a journal commit orders) never queue behind the whole
** snapshot.  Measured: see docs/storage.md. */
#define PACE_BYTES (4 << 20)

enum { HOOK_NONE, HOOK_EXIT, HOOK_KILL, HOOK_SLOW };

/* What the child reports through the pipe. */
typedef struct report {
  int64_t status;
  uint64_t size, nkeys;
} report;

struct rf_snapfork {
  uv_pipe_t pipe;
  pid_t pid;              /* 0 once reaped */
  report rep;
  size_t got;             /* bytes of rep read */
  char junk[16];          /* reads past the report */
  uint64_t index, term;
  int killed;             /* rf_snapfork_kill: no done */
  int status;
  rf_snapfork_done done;
  void *ud;
};

/* ------------------------------------------------------------ child */

typedef struct child_out {
  int fd, hook;
  uint64_t writes;
  uint64_t off;     /* bytes written */
  uint64_t started; /* writeback started up to here */
  uint64_t waited;  /* written back up to here */
} child_out;

static int write_all(int fd, const void *p, size_t len) {
  const char *c = p;
  while (len > 0) {
    ssize_t k = write(fd, c, len);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    c += k;
    len -= (size_t)k;
  }
  return 0;
}

/* Best effort: an error shows again at the fsync that ends the file. */
static void pace(child_out *o) {
  const unsigned wait = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                        SYNC_FILE_RANGE_WAIT_AFTER;
  if (o->off - o->started < PACE_BYTES) return;
  sync_file_range(o->fd, (off64_t)o->started, (off64_t)(o->off - o->started),
                  SYNC_FILE_RANGE_WRITE);
  if (o->started > o->waited)
    sync_file_range(o->fd, (off64_t)o->waited,
                    (off64_t)(o->started - o->waited), wait);
  o->waited = o->started;
  o->started = o->off;
}

static int child_write(void *ud, const void *p, size_t len) {
  child_out *o = ud;
  int rc = write_all(o->fd, p, len);
  if (rc == 0 && o->writes++ == 0) {
    if (o->hook == HOOK_EXIT) _exit(1);
    if (o->hook == HOOK_KILL) raise(SIGKILL);
  }
  if (rc == 0) {
    o->off += len;
    pace(o);
  }
  return rc;
}

/* Close every inherited descriptor but 0-2, a and b: a socket the parent
** closes must not stay open in the child (a peer or an HTTP client would
** not see the close until the child exits). */
static void close_others(int a, int b) {
  unsigned lo = (unsigned)(a < b ? a : b), hi = (unsigned)(a < b ? b : a);
  struct rlimit rl;
  if (syscall(SYS_close_range, hi + 1, ~0u, 0u) < 0 && errno == ENOSYS)
    goto slow;
  if (lo > 3) syscall(SYS_close_range, 3u, lo - 1, 0u);
  if (hi > lo + 1) syscall(SYS_close_range, lo + 1, hi - 1, 0u);
  return;
slow: /* kernels before 5.9 */
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur > (1u << 20))
    rl.rlim_cur = 1u << 20;
  for (unsigned i = 3; i < rl.rlim_cur; i++)
    if (i != lo && i != hi) close((int)i);
}

static void child(const rf_store *st, uint64_t index, uint64_t term,
                  const rf_snap_extra *x, int fd, int wfd, void *buf, int hook,
                  pid_t parent) {
  child_out o = {fd, hook, 0, 0, 0, 0};
  rf_snap_meta m;
  report r;
  int rc;
  signal(SIGINT, SIG_DFL); /* a ^C to the group ends us too, quietly */
  signal(SIGTERM, SIG_DFL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) _exit(2);
  if (setpriority(PRIO_PROCESS, 0, 10) < 0) { /* best effort */ }
  close_others(fd, wfd);
  memset(&m, 0, sizeof(m));
  rc = rf_snap_write(st, index, term, x, buf, BUF_BYTES, child_write, &o,
                     &m);
  if (rc == 0 && fsync(fd) < 0) rc = -errno;
  if (hook == HOOK_SLOW) {
    struct timespec ts = {2, 0};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
  }
  r.status = rc;
  r.size = m.size;
  r.nkeys = m.nkeys;
  if (write_all(wfd, &r, sizeof(r)) < 0) _exit(3);
  _exit(rc == 0 ? 0 : 1);
}

static int test_hook(void) {
  const char *h = getenv("RAFTING_TEST_SNAPSHOT_CHILD");
  if (h == NULL) return HOOK_NONE;
  if (strcmp(h, "exit") == 0) return HOOK_EXIT;
  if (strcmp(h, "kill") == 0) return HOOK_KILL;
  if (strcmp(h, "slow") == 0) return HOOK_SLOW;
  return HOOK_NONE;
}

/* ------------------------------------------------------------ parent */

static void on_closed(uv_handle_t *h) {
  rf_snapfork *f = h->data;
  rf_snap_meta m;
  memset(&m, 0, sizeof(m));
  m.index = f->index;
  m.term = f->term;
  m.size = f->rep.size;
  m.nkeys = f->rep.nkeys;
  if (!f->killed) f->done(f->ud, f->status, &m);
  free(f);
}

/* How the child ended: 0 only for a full report of success and exit 0. */
static int outcome(rf_snapfork *f, int ws) {
  if (WIFSIGNALED(ws)) {
    rf_log(RF_ERROR, "snapshot child %d killed by signal %d (%s)",
           (int)f->pid, WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    return RF_EIO;
  }
  if (f->got == sizeof(f->rep) && f->rep.status < 0) return (int)f->rep.status;
  if (f->got != sizeof(f->rep) || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
    rf_log(RF_ERROR, "snapshot child %d exited with status %d before its "
           "report", (int)f->pid, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    return RF_EIO;
  }
  return 0;
}

static void reap(rf_snapfork *f) {
  int ws = 0;
  pid_t r;
  while ((r = waitpid(f->pid, &ws, 0)) < 0 && errno == EINTR) {}
  f->status = r == f->pid ? outcome(f, ws) : RF_EIO;
  f->pid = 0;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b) {
  rf_snapfork *f = h->data;
  (void)hint;
  if (f->got < sizeof(f->rep))
    *b = uv_buf_init((char *)&f->rep + f->got,
                     (unsigned)(sizeof(f->rep) - f->got));
  else /* more than a report: not from our child; counted, then refused */
    *b = uv_buf_init(f->junk, sizeof(f->junk));
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  rf_snapfork *f = st->data;
  if (n > 0 && b->base == f->junk) f->got = sizeof(f->rep) + 1;
  else if (n > 0) f->got += (size_t)n;
  if (n >= 0) return;
  /* EOF (or an error): the child closed its end when it exited, after
  ** releasing its memory, so reaping it now does not wait */
  uv_read_stop(st);
  reap(f);
  uv_close((uv_handle_t *)&f->pipe, on_closed);
}

static void free_closed(uv_handle_t *h) { free(h); } /* pipe is first */

int rf_snapfork_start(uv_loop_t *loop, const rf_store *st, uint64_t index,
                      uint64_t term, const rf_snap_extra *x, int fd, rf_snapfork_done done, void *ud,
                      rf_snapfork **out, uint64_t *pause_ns) {
  rf_snapfork *f = calloc(1, sizeof(*f));
  void *buf = malloc(BUF_BYTES);
  int p[2] = {-1, -1}, hook = test_hook(), rc = 0;
  pid_t parent = getpid(), pid;
  uint64_t t0;
  if (f == NULL || buf == NULL) rc = UV_ENOMEM;
  else if (pipe2(p, O_CLOEXEC) < 0) rc = -errno;
  else if ((rc = uv_pipe_init(loop, &f->pipe, 0)) == 0) {
    t0 = uv_hrtime();
    pid = fork();
    if (pid == 0) child(st, index, term, x, fd, p[1], buf, hook, parent);
    *pause_ns = uv_hrtime() - t0;
    if (pid < 0) rc = -errno;
    if (rc == 0 && (rc = uv_pipe_open(&f->pipe, p[0])) == 0) p[0] = -1;
    if (rc < 0 && pid > 0) { /* cannot watch it: do not leave it running */
      kill(pid, SIGKILL);
      while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    }
    if (rc == 0) {
      f->pid = pid;
      f->index = index;
      f->term = term;
      f->done = done;
      f->ud = ud;
      f->pipe.data = f;
      uv_read_start((uv_stream_t *)&f->pipe, on_alloc, on_read);
      *out = f;
      f = NULL;
    } else {
      uv_close((uv_handle_t *)&f->pipe, free_closed);
      f = NULL;
    }
  }
  if (p[0] >= 0) close(p[0]);
  if (p[1] >= 0) close(p[1]);
  free(buf);
  free(f);
  return rc;
}

void rf_snapfork_kill(rf_snapfork *f) {
  f->killed = 1;
  if (f->pid == 0) return; /* reaped; its close is under way */
  kill(f->pid, SIGKILL);
  uv_read_stop((uv_stream_t *)&f->pipe);
  reap(f);
  uv_close((uv_handle_t *)&f->pipe, on_closed);
}
