/*
** lmod_proc.c -- rafting.proc: child processes for the cluster test harness.
**
** The harness (lua/rafting/testing/cluster.lua) starts real `rafting` nodes
** and must kill, pause, reap and time them without lua-posix.  This module
** is that small POSIX layer: spawn/kill/wait/alive, a monotonic clock, a
** poll-interval sleep, free loopback ports, a temp dir, and a signal trap
** for Lua scripts that must exit cleanly on SIGTERM (the fake node).
**
** Every child gets PR_SET_PDEATHSIG(SIGKILL): if the Lua process dies, for
** any reason, its children die with it.  So no node outlives a test run.
**
** Memory: scratch memory for a spawn (argv and envp arrays, "K=V" strings)
** is Lua-owned, anchored on the stack for the duration of the call; nothing
** is malloc'd by hand.  The only global state is the set of trapped signals.
** Errors are returned Lua-style as nil, message; bad arguments raise.
*/
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include <lua.h>
#include <lauxlib.h>

#include "rafting/util.h"

extern char **environ;

/* -- signal names ------------------------------------------------------- */

static const struct { const char *name; int sig; } signames[] = {
  {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"STOP", SIGSTOP}, {"CONT", SIGCONT},
  {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT}, {"USR1", SIGUSR1},
  {"USR2", SIGUSR2}, {"ABRT", SIGABRT}, {"SEGV", SIGSEGV}, {"PIPE", SIGPIPE},
  {"ALRM", SIGALRM}, {"CHLD", SIGCHLD}, {"BUS", SIGBUS},   {"FPE", SIGFPE},
  {"ILL", SIGILL},   {"TRAP", SIGTRAP}, {NULL, 0}
};

static const char *sig_name(int sig) {
  for (int i = 0; signames[i].name; i++)
    if (signames[i].sig == sig) return signames[i].name;
  return NULL;
}

/* Accepts "TERM", "SIGTERM" or a number; raises on anything else. */
static int check_sig(lua_State *L, int arg) {
  if (lua_type(L, arg) == LUA_TNUMBER) {
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, n >= 0 && n < NSIG, arg, "signal number out of range");
    return (int)n;
  }
  const char *s = luaL_checkstring(L, arg);
  if (strncmp(s, "SIG", 3) == 0) s += 3;
  for (int i = 0; signames[i].name; i++)
    if (strcmp(signames[i].name, s) == 0) return signames[i].sig;
  return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", s));
}

/* pid arguments must be > 0: kill(0) or kill(-1) would hit far more than
** the one child the caller meant. */
static pid_t check_pid(lua_State *L, int arg) {
  lua_Integer pid = luaL_checkinteger(L, arg);
  luaL_argcheck(L, pid > 0 && pid <= INT_MAX, arg, "pid must be > 0");
  return (pid_t)pid;
}

static int fail(lua_State *L, const char *what) {
  int e = errno;
  luaL_pushfail(L);
  if (what) lua_pushfstring(L, "%s: %s", what, strerror(e));
  else lua_pushstring(L, strerror(e));
  return 2;
}

/* -- spawn -------------------------------------------------------------- */

/* What the child needs, all prepared before fork(): after fork the child
** may only call async-signal-safe functions, so no allocation there. */
typedef struct spawn_req {
  char **argv;
  char **envp;          /* NULL: inherit environ */
  const char *cwd;      /* NULL: stay */
  int fd_in, fd_out, fd_err;
  int report;           /* CLOEXEC pipe: child writes stage+errno on failure */
  pid_t parent;
} spawn_req;

/* Stages reported by a child that could not exec. */
enum { ST_PRCTL = 1, ST_DUP, ST_CHDIR, ST_EXEC };
static const char *const stage_name[] = {
  "?", "prctl", "dup2", "chdir", "exec"
};

static void close_from(int lo, int hi) {
  if (lo > hi) return;
#ifdef SYS_close_range
  if (syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0) == 0) return;
#endif
  for (int fd = lo; fd <= hi && fd < 65536; fd++) close(fd);
}

static void child_report(int fd, int stage) {
  int msg[2] = { stage, errno };
  ssize_t n;
  do n = write(fd, msg, sizeof msg); while (n < 0 && errno == EINTR);
  _exit(127);
}

static void child(const spawn_req *r) {
  sigset_t none;
  /* Signals ignored by the parent (lua-socket ignores SIGPIPE) would stay
  ** ignored across exec; a node must start with defaults. */
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  for (int s = 1; s < NSIG; s++)
    if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) child_report(r->report, ST_PRCTL);
  /* The parent may have died between fork() and prctl(). */
  if (getppid() != r->parent) _exit(127);
  if (dup2(r->fd_in, 0) < 0) child_report(r->report, ST_DUP);
  if (r->fd_out >= 0 && dup2(r->fd_out, 1) < 0) child_report(r->report, ST_DUP);
  if (r->fd_err >= 0 && dup2(r->fd_err, 2) < 0) child_report(r->report, ST_DUP);
  /* Sockets the harness holds (lua-socket does not set CLOEXEC) must not
  ** leak into nodes; keep only 0-2 and the report pipe. */
  close_from(3, r->report - 1);
  close_from(r->report + 1, INT_MAX);
  if (r->cwd && chdir(r->cwd) < 0) child_report(r->report, ST_CHDIR);
  if (r->envp) execvpe(r->argv[0], r->argv, r->envp);
  else execvp(r->argv[0], r->argv);
  child_report(r->report, ST_EXEC);
}

/* opts.argv -> NULL-terminated array in a userdata pushed on the stack,
** after an anchor table holding the strings (numbers converted). */
static char **build_argv(lua_State *L, int opts) {
  if (lua_getfield(L, opts, "argv") != LUA_TTABLE)
    luaL_error(L, "spawn: opts.argv must be a table of strings");
  int t = lua_gettop(L);
  lua_Integer n = luaL_len(L, t);
  if (n < 1) luaL_error(L, "spawn: opts.argv is empty");
  lua_createtable(L, (int)n, 0);
  char **argv = lua_newuserdatauv(L, (size_t)(n + 1) * sizeof *argv, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, t, i);
    if (!lua_isstring(L, -1))
      luaL_error(L, "spawn: opts.argv[%d] is not a string", (int)i);
    argv[i - 1] = (char *)lua_tostring(L, -1);
    lua_rawseti(L, t + 1, i);
  }
  argv[n] = NULL;
  return argv;
}

/* opts.env = { NAME = "value" | false } applied over environ.  Pushes an
** anchor table of "K=V" strings and the array userdata; NULL if no env. */
static char **build_envp(lua_State *L, int opts) {
  if (lua_getfield(L, opts, "env") == LUA_TNIL) return NULL;
  int env = lua_gettop(L);
  luaL_argcheck(L, lua_istable(L, env), 1, "opts.env must be a table");
  lua_newtable(L); /* name -> "K=V", or false when unset */
  int acc = lua_gettop(L);
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq) continue;
    lua_pushlstring(L, *e, (size_t)(eq - *e));
    lua_pushstring(L, *e);
    lua_rawset(L, acc);
  }
  lua_pushnil(L);
  while (lua_next(L, env)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "spawn: opts.env keys must be strings");
    lua_pushvalue(L, -2);
    if (lua_toboolean(L, -2) == 0) lua_pushboolean(L, 0);
    else if (lua_isstring(L, -2))
      lua_pushfstring(L, "%s=%s", lua_tostring(L, -1), lua_tostring(L, -2));
    else
      luaL_error(L, "spawn: opts.env.%s must be a string or false",
                 lua_tostring(L, -1));
    lua_rawset(L, acc);
    lua_pop(L, 1);
  }
  size_t n = 0;
  lua_pushnil(L);
  while (lua_next(L, acc)) { n += lua_isstring(L, -1); lua_pop(L, 1); }
  char **envp = lua_newuserdatauv(L, (n + 1) * sizeof *envp, 0);
  size_t i = 0;
  lua_pushnil(L);
  while (lua_next(L, acc)) {
    if (lua_isstring(L, -1)) envp[i++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  envp[i] = NULL;
  return envp;
}

static int open_out(lua_State *L, int opts, const char *field) {
  const char *path = (lua_getfield(L, opts, field), lua_tostring(L, -1));
  lua_pop(L, 1);
  if (!path) return -1;
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    lua_pushfstring(L, "open %s: %s", path, strerror(errno));
    return -2;
  }
  return fd;
}

static void close_fds(spawn_req *r) {
  if (r->fd_in >= 0) close(r->fd_in);
  if (r->fd_out >= 0) close(r->fd_out);
  if (r->fd_err >= 0 && r->fd_err != r->fd_out) close(r->fd_err);
}

/* spawn{argv={...}, stdout=path, stderr=path, env={...}, cwd=dir} -> pid */
static int l_spawn(lua_State *L) {
  spawn_req r = { NULL, NULL, NULL, -1, -1, -1, -1, 0 };
  int rp[2], msg[2];
  ssize_t n;
  pid_t pid;

  luaL_checktype(L, 1, LUA_TTABLE);
  r.argv = build_argv(L, 1);
  r.envp = build_envp(L, 1);
  r.cwd = (lua_getfield(L, 1, "cwd"), lua_tostring(L, -1));
  if ((r.fd_out = open_out(L, 1, "stdout")) == -2) goto fail_msg;
  lua_getfield(L, 1, "stdout");
  lua_getfield(L, 1, "stderr");
  /* One file for both: share the descriptor so writes interleave in order. */
  if (r.fd_out >= 0 && lua_rawequal(L, -1, -2)) r.fd_err = r.fd_out;
  else if ((r.fd_err = open_out(L, 1, "stderr")) == -2) goto fail_msg;
  if ((r.fd_in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
    lua_pushfstring(L, "open /dev/null: %s", strerror(errno));
    goto fail_msg;
  }
  if (pipe2(rp, O_CLOEXEC) < 0) {
    lua_pushfstring(L, "pipe2: %s", strerror(errno));
    goto fail_msg;
  }
  r.report = rp[1];
  r.parent = getpid();
  pid = fork();
  if (pid == 0) child(&r); /* does not return */
  int fork_errno = errno;
  close(rp[1]);
  close_fds(&r);
  if (pid < 0) {
    close(rp[0]);
    errno = fork_errno;
    return fail(L, "fork");
  }
  /* EOF means exec succeeded (the pipe was CLOEXEC); a message means not. */
  do n = read(rp[0], msg, sizeof msg); while (n < 0 && errno == EINTR);
  close(rp[0]);
  if (n == (ssize_t)sizeof msg) {
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    luaL_pushfail(L);
    lua_pushfstring(L, "%s %s: %s",
                    stage_name[msg[0] >= 1 && msg[0] <= ST_EXEC ? msg[0] : 0],
                    r.argv[0], strerror(msg[1]));
    return 2;
  }
  lua_pushinteger(L, pid);
  return 1;

fail_msg:
  close_fds(&r);
  luaL_pushfail(L);
  lua_insert(L, -2);
  return 2;
}

/* -- signals and reaping ------------------------------------------------ */

static int l_kill(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int sig = check_sig(L, 2);
  if (kill(pid, sig) < 0) return fail(L, "kill");
  lua_pushboolean(L, 1);
  return 1;
}

/* wait(pid, nohang) -> "exited", code | "signaled", sig, name | nil */
static int l_wait(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  int nohang = lua_toboolean(L, 2), st;
  pid_t r;
  do r = waitpid(pid, &st, nohang ? WNOHANG : 0); while (r < 0 && errno == EINTR);
  if (r < 0) return fail(L, "waitpid");
  if (r == 0) { lua_pushnil(L); return 1; } /* still running */
  if (WIFEXITED(st)) {
    lua_pushliteral(L, "exited");
    lua_pushinteger(L, WEXITSTATUS(st));
    return 2;
  }
  lua_pushliteral(L, "signaled");
  lua_pushinteger(L, WTERMSIG(st));
  lua_pushstring(L, sig_name(WTERMSIG(st)));
  return 3;
}

/* /proc/<pid>/stat fields after the command name: field 3 is the state,
** field 22 the start time.  Returns the pointer to field 3 or NULL. */
static const char *proc_stat(pid_t pid, char *buf, size_t len) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  ssize_t n = read(fd, buf, len - 1);
  close(fd);
  if (n <= 0) return NULL;
  buf[n] = '\0';
  char *p = strrchr(buf, ')'); /* the name may itself contain ") " */
  return p && p[1] == ' ' ? p + 2 : NULL;
}

/* A zombie or a pid that is gone is not alive. */
static int l_alive(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  char buf[1024];
  if (kill(pid, 0) < 0 && errno == ESRCH) {
    lua_pushboolean(L, 0);
    return 1;
  }
  const char *st = proc_stat(pid, buf, sizeof buf);
  lua_pushboolean(L, !st || (*st != 'Z' && *st != 'X'));
  return 1;
}

/* state(pid) -> the one-letter state of /proc/<pid>/stat ("R", "S", "T"
** stopped, "Z" zombie, ...): lets pause() wait until SIGSTOP took hold. */
static int l_state(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  char buf[1024];
  const char *p = proc_stat(pid, buf, sizeof buf);
  if (!p) return fail(L, "stat");
  lua_pushlstring(L, p, 1);
  return 1;
}

/* starttime(pid) -> clock ticks after boot: with the pid it names one
** process for good, so a pid file stays meaningful after pid reuse. */
static int l_starttime(lua_State *L) {
  pid_t pid = check_pid(L, 1);
  char buf[1024];
  const char *p = proc_stat(pid, buf, sizeof buf);
  if (!p) return fail(L, "stat");
  for (int field = 3; field < 22 && p; field++) {
    p = strchr(p, ' ');
    if (p) p++;
  }
  if (!p) { errno = EINVAL; return fail(L, "stat"); }
  lua_pushinteger(L, (lua_Integer)strtoull(p, NULL, 10));
  return 1;
}

/* Trapped signals only set a flag; the script polls caught(). */
static volatile sig_atomic_t trapped[NSIG];

static void on_signal(int sig) { trapped[sig] = 1; }

/* trap("TERM", "INT", ...) */
static int l_trap(lua_State *L) {
  int n = lua_gettop(L);
  for (int i = 1; i <= n; i++) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(check_sig(L, i), &sa, NULL) < 0) return fail(L, "sigaction");
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* caught() -> name (or number) of one trapped signal that arrived, or nil */
static int l_caught(lua_State *L) {
  for (int s = 1; s < NSIG; s++) {
    if (!trapped[s]) continue;
    trapped[s] = 0;
    const char *name = sig_name(s);
    if (name) lua_pushstring(L, name);
    else lua_pushinteger(L, s);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

/* -- time --------------------------------------------------------------- */

static int l_now_ms(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)rf_now_ms());
  return 1;
}

/* For poll intervals inside deadline loops only; never as synchronization. */
static int l_sleep_ms(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  struct timespec ts;
  if (ms <= 0) return 0;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)((ms - (lua_Number)ts.tv_sec * 1000) * 1e6);
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
  return 0;
}

/* -- ports, files ------------------------------------------------------- */

/* free_port([n]) -> n distinct ports free on 127.0.0.1.  All n sockets are
** held open together, so the kernel cannot hand out the same port twice. */
static int l_free_port(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 1);
  int fds[64], got = 0;
  luaL_argcheck(L, n >= 1 && n <= 64, 1, "between 1 and 64 ports");
  luaL_checkstack(L, (int)n, "too many ports");
  for (; got < n; got++) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fds[got] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fds[got] < 0 || bind(fds[got], (struct sockaddr *)&a, sizeof a) < 0 ||
        getsockname(fds[got], (struct sockaddr *)&a, &len) < 0) {
      int e = errno;
      if (fds[got] >= 0) close(fds[got]);
      while (got-- > 0) close(fds[got]);
      lua_settop(L, 0);
      errno = e;
      return fail(L, "free_port");
    }
    lua_pushinteger(L, ntohs(a.sin_port));
  }
  while (got-- > 0) close(fds[got]);
  return (int)n;
}

/* mkdtemp(prefix) -> a new private directory named prefix..XXXXXX */
static int l_mkdtemp(lua_State *L) {
  size_t len;
  const char *prefix = luaL_checklstring(L, 1, &len);
  char *buf = lua_newuserdatauv(L, len + 7, 0);
  memcpy(buf, prefix, len);
  memcpy(buf + len, "XXXXXX", 7);
  if (!mkdtemp(buf)) return fail(L, "mkdtemp");
  lua_pushstring(L, buf);
  return 1;
}

static int l_getpid(lua_State *L) {
  lua_pushinteger(L, getpid());
  return 1;
}

static const luaL_Reg funcs[] = {
  {"spawn", l_spawn},         {"kill", l_kill},       {"wait", l_wait},
  {"alive", l_alive},         {"state", l_state},
  {"starttime", l_starttime},
  {"trap", l_trap},           {"caught", l_caught},
  {"now_ms", l_now_ms},       {"sleep_ms", l_sleep_ms},
  {"free_port", l_free_port}, {"mkdtemp", l_mkdtemp}, {"getpid", l_getpid},
  {NULL, NULL}
};

int luaopen_rafting_proc(lua_State *L);

int luaopen_rafting_proc(lua_State *L) {
  luaL_newlib(L, funcs);
  return 1;
}
