/*
** launch.h -- `rafting cluster`: start every node of a config as a child
** process and supervise them until SIGINT/SIGTERM.
**
** rf_launch_cluster() loads config_path, forks+execs
** `self_exe --config config_path --node ID [--log-level L] [--log-format F]`
** (each flag only when given, else the nodes read the config's) for each
** node (children die with the launcher: PR_SET_PDEATHSIG), prints where each
** node listens, waits up to 10 s for a leader and prints it, then waits for
** signals.  SIGINT/SIGTERM are forwarded to the nodes as SIGTERM (SIGKILL
** after 5 s, or at a second signal); a node that dies meanwhile is reported
** and left dead.  It blocks SIGINT, SIGTERM and SIGCHLD in the calling
** process and takes them synchronously; call it from a single-threaded
** process.  No memory is handed to or taken from the caller.
**
** Returns the process exit status: 0 after a signalled stop, 1 when every
** node died on its own (or one could not be started), 2 for a bad config.
*/
#ifndef RAFTING_LAUNCH_H
#define RAFTING_LAUNCH_H

int rf_launch_cluster(const char *self_exe, const char *config_path,
                      const char *log_level, const char *log_format);

#endif
